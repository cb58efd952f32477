"""How long a consumer lets the broker hold a fetch: short while records flow, long when idle.

A fetch that finds no records is held by the broker for up to ``fetch_max_wait_ms``. Kafka
answers it as soon as a record arrives; tansu does not: the lags measured fit one more look
at half of the wait (this box, one producer at 250 records/s in batches of 10 every 40 ms,
12 partitions, record CreateTime → consumer: p50 135-140 / p99 274-323 / max 297-368 ms at
500 ms; p50 33-35 / max 61-219 ms at 100 ms; p50 13-16 ms at 20 ms). A record arriving while a
fetch is held therefore waits for that look, and with one long wait for every case that was
most of the end-to-end lag (issue 16: e2e p99 at 250 cmd/s 70.8 ms with 20 ms, 344 ms with
500 ms; BENCHMARKS.md, "Performance round 7").

A short wait costs an idle consumer a fetch round trip every few tens of milliseconds (about
7 % of a core at 20 ms, 0.6 % at 500 ms, same measurement), so :class:`FetchWait` switches: the
consumer's configured wait (long) while nothing came for :data:`IDLE_AFTER_SECONDS`, and
:data:`BUSY_FETCH_WAIT_MS` from a poll that returned records until it is idle again. The first
record after an idle spell still waits up to half the long wait (the fetch already held by
the broker was sent with it); the records that follow do not.
"""

from __future__ import annotations

from typing import Any

import structlog

log = structlog.get_logger(__name__)
BUSY_FETCH_WAIT_MS = 20
"""The fetch wait while records flow (tansu's next look within about 10 ms then)."""
IDLE_AFTER_SECONDS = 2.0
"""How long after the last polled record a consumer goes back to its configured (long) wait."""


class FetchWait:
    """Adapts a :class:`kafka.KafkaConsumer`'s fetch wait to whether records flow.

    Call :meth:`polled` after every ``poll`` with whether it returned records and the
    ``time.monotonic()`` of the call; it sets the wait the consumer's next fetch request asks
    for. ``idle_ms`` is the consumer's configured ``fetch_max_wait_ms``."""

    def __init__(
        self,
        idle_ms: int,
        *,
        busy_ms: int = BUSY_FETCH_WAIT_MS,
        idle_after: float = IDLE_AFTER_SECONDS,
    ) -> None:
        self.idle_ms = idle_ms
        self.busy_ms = min(busy_ms, idle_ms)
        self.idle_after = idle_after
        self.wait_ms = idle_ms
        self._records_at: float | None = None  # monotonic time of the last poll with records

    @classmethod
    def of(cls, consumer: Any) -> FetchWait:
        """One for ``consumer``, starting from (and going back to) its configured wait; a
        client whose fetch wait cannot be changed is logged (``kafka.fetch_wait_unsupported``:
        it keeps its configured wait, so records may wait up to half of it on tansu)."""
        configured = int(consumer.config["fetch_max_wait_ms"])
        if _fetcher_config(consumer) is None:
            log.warning("kafka.fetch_wait_unsupported", configured_ms=configured)
        return cls(configured)

    def polled(self, consumer: Any, records: bool, now: float) -> int:
        """After a poll of ``consumer`` at ``now``: the wait its next fetches ask for (ms; the
        configured one for a client whose wait cannot be changed)."""
        if records:
            self._records_at = now
        busy = self._records_at is not None and now - self._records_at < self.idle_after
        wanted = self.busy_ms if busy else self.idle_ms
        if wanted != self.wait_ms or fetch_wait(consumer) != wanted:
            set_fetch_wait(consumer, wanted)
            self.wait_ms = wanted
        return fetch_wait(consumer) or self.idle_ms


def fetch_wait(consumer: Any) -> int | None:
    """The ``max_wait_ms`` ``consumer``'s next fetch requests carry; None if it cannot be told."""
    config = _fetcher_config(consumer)
    return None if config is None else int(config["fetch_max_wait_ms"])


def set_fetch_wait(consumer: Any, wait_ms: int) -> None:
    """Make ``consumer``'s next fetch requests carry ``max_wait_ms=wait_ms``.

    kafka-python reads its fetcher's copy of the setting for every fetch request it builds
    (3.0.12: ``Fetcher._create_fetch_requests``); there is no public setter. A consumer
    without one (another client version) keeps its configured wait."""
    config = _fetcher_config(consumer)
    if config is not None:
        config["fetch_max_wait_ms"] = wait_ms


def _fetcher_config(consumer: Any) -> dict[str, Any] | None:
    config = getattr(getattr(consumer, "_fetcher", None), "config", None)
    if isinstance(config, dict) and "fetch_max_wait_ms" in config:
        return config
    return None
