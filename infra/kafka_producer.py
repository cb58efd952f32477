"""A producer that replaces itself when it is broken for good or cannot flush in time.

:func:`infra.kafka.producer` makes every producer of ours as a :class:`RenewingProducer`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from infra.logging import exception_text

log = structlog.get_logger(__name__)

FLUSH_TIMEOUT_SECONDS = 30.0
"""How long a flush may wait for the broker's acks by default (a broker that lost its state
or stopped answering otherwise holds a loop's flush for minutes)."""


class FlushTimedOut(KafkaTimeoutError):  # type: ignore[misc]
    """A flush did not complete in time: the producer was dropped (the next send makes a new
    one) and the records it held failed unacknowledged, so the caller sends its batch again. Retriable (a
    :class:`KafkaTimeoutError`), so :mod:`infra.resilience` waits it out as a Kafka outage."""


class RenewingProducer:
    """A :class:`KafkaProducer` that replaces itself once it is broken for good.

    An idempotent producer whose broker lost its state (restarted without its data) gets an
    error to its ``InitProducerId`` request that kafka-python treats as fatal: from then on
    every send fails, forever. Before each send or flush this one looks whether its producer
    is in that state and, if so, closes it and makes a new one (a new producer id); a caller
    whose acks time out renews it itself (:meth:`renew`). A flush
    is bounded (``flush_timeout``, :data:`FLUSH_TIMEOUT_SECONDS` by default): one that times out
    renews the producer too and raises :class:`FlushTimedOut`. A renewal is logged once as
    ``kafka.producer_renewed`` with its ``reason``. Records the replaced producer held were
    never acknowledged (their futures fail), so their senders retry them. Everything else is
    the wrapped producer's (safe from many threads).
    """

    def __init__(
        self, make: Callable[[], KafkaProducer], flush_timeout: float = FLUSH_TIMEOUT_SECONDS
    ) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._producer = make()
        self._dropped = False  # the producer was closed after a failed flush: make a new one
        self.flush_timeout = flush_timeout

    def _broken(self) -> BaseException | None:
        # kafka-python keeps the idempotence state in its (private) transaction manager
        manager = getattr(self._producer, "_transaction_manager", None)
        if manager is None or not manager.has_fatal_error():
            return None
        error: BaseException = manager.last_error
        return error

    def _current(self) -> KafkaProducer:
        if not self._dropped and self._broken() is None:
            return self._producer
        with self._lock:  # another thread may have renewed it meanwhile
            if not self._dropped and (error := self._broken()) is not None:
                self._drop(self._producer, f"fatal producer error: {error!r}")
            if self._dropped:
                self._producer = self._make()  # may wait for the broker (bounded by the client)
                self._dropped = False
            return self._producer

    def _drop(self, broken: KafkaProducer, reason: str) -> None:
        """Close ``broken`` (failing what it still holds) so the next use makes a new producer,
        never waiting for the broker here (the caller holds the lock)."""
        self._dropped = True
        log.warning("kafka.producer_renewed", reason=reason)
        try:
            broken.close(timeout=0)
        except Exception as error:  # it is broken: closing it is best effort
            log.debug("kafka.broken_producer_close_failed", exception=exception_text(error))

    def current(self) -> KafkaProducer:
        """The producer sends go through now (a new one first if it was dropped or is broken
        for good): for a caller sending many records at once, looked at once for all of them
        (one that breaks meanwhile fails their acks; the caller's retry then renews it)."""
        return self._current()

    def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        """:meth:`KafkaProducer.send` through the current producer (a new one first if it was
        dropped or is broken for good): returns its ``FutureRecordMetadata``; a record above
        ``max_request_size`` raises ``MessageSizeTooLargeError``."""
        return self._current().send(topic, *args, **kwargs)

    def renew(self, reason: str) -> None:
        """Drop the current producer now, never waiting for the broker: the records it still
        holds fail unacknowledged and the next send makes a new one. For a caller whose acks
        did not come in time (``future.get`` raised ``KafkaTimeoutError``): its retry then
        goes through a fresh producer, not the stuck one. Logged as ``kafka.producer_renewed``
        with ``reason``; safe from many threads (a producer already dropped is left alone)."""
        with self._lock:
            if not self._dropped:
                self._drop(self._producer, reason)

    def flush(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (None: :attr:`flush_timeout`) until every record
        sent so far is acknowledged or failed; raises :class:`FlushTimedOut` if not done, after
        dropping the producer (the next send makes a new one)."""
        current = self._current()
        seconds = self.flush_timeout if timeout is None else timeout
        try:
            current.flush(timeout=seconds)
        except KafkaTimeoutError as error:
            reason = f"flush not done within {seconds} s"
            with self._lock:
                if self._producer is current and not self._dropped:  # not renewed meanwhile
                    self._drop(current, reason)
            raise FlushTimedOut(f"{reason} (broker unavailable?)") from error

    def close(self, timeout: float | None = None) -> None:
        """Close the current producer, waiting up to ``timeout`` seconds (None: until done)
        for the records it holds."""
        self._producer.close(timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)
