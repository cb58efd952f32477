"""A consumer-group member that replaces its :class:`KafkaConsumer` when it is stuck outside
its group.

kafka-python 3.0.12 can lose a consumer for good after the broker restarted without its data
(tansu with memory storage; dpkp/kafka-python #2373 and #1493 report the like): its cached
FindCoordinator future never completes, so every later ``poll`` waits on that same future,
returns nothing and never joins the group again — the process looks alive and consumes nothing.

:class:`GroupConsumer` watches for that after each poll: a member is *live* while a poll
returns records or the group coordinator answered its heartbeats within ``stall_seconds``
(an idle member of a stable group is heard every ``heartbeat_interval_ms``). A member not
live for ``stall_seconds`` is closed (bounded) and replaced by a new one with the same
subscription, logged as ``kafka.consumer_rebuilt`` (a warning once per episode, DEBUG for
further rebuilds until it is live again, then ``kafka.consumer_live_again``). A rebuild
happens only after a poll that returned no records, so nothing polled is dropped: the new
member resumes from the positions its owner keeps (Kafka's committed offsets for ``ingest``,
which commits after each answered batch and whose commands are idempotent; the read store's
offsets for projection consumers, sought on assignment). During a broker outage this costs
one warning per outage and a rebuild per bound; the bound is doubled (once,
:data:`MAX_DOUBLINGS`) after a rebuild that did not make the member live again, so a join that
takes longer than ``stall_seconds`` (tansu's first join, a replaced member that could not leave
holding the next one for its session timeout) is not cut short again and again.

It also lets the broker hold its fetches only briefly while records flow, and long when idle
(:mod:`infra.kafka_fetch_wait`): tansu answers a held fetch only at its next look.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from kafka import KafkaConsumer

from infra.kafka import MessageLimits, consumer
from infra.kafka_fetch_wait import FetchWait
from infra.logging import exception_text

log = structlog.get_logger(__name__)

STALL_SECONDS = 60.0
"""How long a member may go unheard by its group before it is rebuilt (broker restarts and
rebalances on tansu take seconds; the fault-injection bound is 180 s)."""
MAX_DOUBLINGS = 1
"""Rebuilds in a row after which the bound stops doubling (at twice ``stall_seconds``)."""
CLOSE_TIMEOUT_MS = 5_000
METADATA_MAX_AGE_MS = 5_000


def last_heard(consumer: KafkaConsumer) -> float | None:
    """``time.monotonic()`` when ``consumer``'s group coordinator last answered a heartbeat
    (a member sends them only once it joined); None if it never did."""
    # kafka-python keeps it in its (private) coordinator's heartbeat state, as it uses it for
    # its own session-timeout check; absent there, the watch only counts polled records.
    heartbeat = getattr(getattr(consumer, "_coordinator", None), "heartbeat", None)
    if heartbeat is None:
        return None
    heard = float(heartbeat.last_receive)
    return heard if heard != float("-inf") else None


def group_consumer(
    bootstrap: str,
    group: str,
    limits: MessageLimits | None = None,
    *,
    stall_seconds: float = STALL_SECONDS,
    **overrides: object,
) -> GroupConsumer:
    """A member of ``group`` made as :func:`infra.kafka.consumer` makes one, rebuilt when it
    is stuck outside its group (:class:`GroupConsumer`). It refreshes its metadata every
    :data:`METADATA_MAX_AGE_MS`: a topic the broker lost and the relay recreated with another
    partition count is rebalanced onto within seconds, not after kafka-python's 5 minutes (till
    then records on the partitions it does not know go unread)."""
    settings: dict[str, object] = {"metadata_max_age_ms": METADATA_MAX_AGE_MS, **overrides}
    return GroupConsumer(
        lambda: consumer(bootstrap, group, limits, **settings), group, stall_seconds=stall_seconds
    )


class GroupConsumer:
    """A :class:`KafkaConsumer` made by ``make`` (a member of a consumer group), replaced when
    it went unheard for ``stall_seconds``, its fetch wait short while records flow (module
    docstring). Everything but :meth:`subscribe`,
    :meth:`poll` and :meth:`close` is the current consumer's. Not thread-safe (one consumer
    loop owns it, as with :class:`KafkaConsumer`)."""

    def __init__(
        self,
        make: Callable[[], KafkaConsumer],
        name: str,
        *,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self._make = make
        self.name = name
        self.stall_seconds = stall_seconds
        self._consumer = make()
        self.fetch_wait = FetchWait.of(self._consumer)
        self._subscription: tuple[list[str], Any] | None = None
        self._live_at = time.monotonic()  # the last time it was known live (or made)
        self._in_a_row = 0  # rebuilds since it was last live (> 0: stuck)
        self.rebuilds = 0

    @property
    def stall_bound(self) -> float:
        """Seconds the current member may go unheard: ``stall_seconds``, doubled per rebuild
        since the member was last live, at most :data:`MAX_DOUBLINGS` times."""
        return self.stall_seconds * float(2 ** min(self._in_a_row, MAX_DOUBLINGS))

    @property
    def consumer(self) -> KafkaConsumer:
        """The current consumer (another after a rebuild)."""
        return self._consumer

    def subscribe(self, topics: Sequence[str], listener: Any = None) -> None:
        """Subscribe to ``topics`` (with the rebalance ``listener``), now and after a rebuild."""
        self._subscription = (list(topics), listener)
        self._consumer.subscribe(list(topics), listener=listener)

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        """The current consumer's ``poll``; sets the wait of its next fetches, and rebuilds
        it afterwards if it is stuck."""
        batches: dict[Any, list[Any]] = self._consumer.poll(timeout_ms=timeout_ms)
        now = time.monotonic()
        self.fetch_wait.polled(self._consumer, bool(batches), now)
        heard = last_heard(self._consumer)
        if batches or (heard is not None and heard > self._live_at):
            self._live_at = now
            if self._in_a_row:
                log.info("kafka.consumer_live_again", consumer=self.name, rebuilds=self.rebuilds)
            self._in_a_row = 0
        elif now - self._live_at >= self.stall_bound:
            self.rebuild(f"not heard by its group for {now - self._live_at:.0f} s")
        return batches

    def rebuild(self, reason: str) -> None:
        """Close the current consumer (bounded) and put a new, resubscribed one in its place."""
        self.rebuilds += 1
        event = "kafka.consumer_rebuilt"
        fields = {"consumer": self.name, "reason": reason, "rebuilds": self.rebuilds}
        if self._in_a_row:  # stuck already: warned at its first rebuild
            log.debug(event, **fields)
        else:
            log.warning(event, **fields)
        self._in_a_row += 1
        self._close(self._consumer)
        self._consumer = self._make()
        self._live_at = time.monotonic()
        if self._subscription is not None:
            topics, listener = self._subscription
            self._consumer.subscribe(topics, listener=listener)

    def close(self, timeout_ms: int | None = None) -> None:
        self._consumer.close(timeout_ms=timeout_ms)

    @staticmethod
    def _close(consumer: KafkaConsumer) -> None:
        try:
            consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
        except Exception as error:  # it is stuck: closing it is best effort
            log.debug("kafka.stuck_consumer_close_failed", exception=exception_text(error))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)
