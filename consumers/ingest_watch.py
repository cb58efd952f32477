"""Does the command ingest read every partition of its topic? The watch behind
``ingest.fetch_stalled``.

CI met an ingest that, after a broker restart, assigned itself (the group's leader) partitions
0-3 of the 6 the commands topic had by then, and never rebalanced while 4 and 5 filled up: its
metadata at the assignment still said 4 (tansu had auto-created the topic with 4 before it was
repaired). Every ``interval`` the watch looks at the topic (:class:`~infra.kafka_topics.
TopicInspector`) and keeps, per partition, since when its offset stood still behind the end
(:class:`~consumers.fetch_watch.FetchWatch`): the member's position for its own partitions; for
the others, the group's committed offset (the partition's beginning when none was committed),
but only while the group has one member (or the broker does not say: tansu), since another
member's partitions are that member's to watch. After ``stall_seconds`` it logs
``ingest.fetch_stalled`` and replaces the Kafka consumer
(:meth:`~infra.kafka_group.GroupConsumer.rebuild`): the new member joins with the topic as it
is and resumes from the committed offsets. A look the broker cannot answer is skipped
(``ingest.verify_failed``): the ingest's own polls meet the outage.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from kafka.errors import KafkaError

from consumers.fetch_watch import STALL_SECONDS, FetchWatch
from infra.kafka_group import GroupConsumer
from infra.kafka_topics import TopicInspector

log = structlog.get_logger(__name__)
POSITION_TIMEOUT_MS = 2_000


class IngestWatch:
    """Looks at most every ``interval`` seconds (:meth:`look`); :meth:`restart` after a
    batch failed (standing still while the store is away is no stall)."""

    def __init__(
        self,
        inspector: TopicInspector,
        topic: str,
        *,
        interval: float = 5.0,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self.inspector = inspector
        self.topic = topic
        self.interval = interval
        self.clock = FetchWatch(stall_seconds)
        self._next = 0.0

    def restart(self) -> None:
        self.clock.restart()

    def look(self, consumer: Any) -> None:
        """Replace ``consumer`` (a :class:`GroupConsumer`; a plain consumer is only logged
        about) if a partition stood still behind the topic's end. A member with nothing
        assigned is joining, which :class:`GroupConsumer` watches."""
        now = time.monotonic()
        assigned = {tp.partition: tp for tp in consumer.assignment()}
        if now < self._next or not assigned:
            return
        self._next = now + self.interval
        try:
            offsets, ends = self._offsets(consumer, assigned)
        except KafkaError as error:
            log.warning("ingest.verify_failed", topic=self.topic, error=repr(error))
            return
        stall = self.clock.look(offsets, ends, now)
        if stall is None:
            return
        reason = stall.reason(set(assigned))
        log.warning(
            "ingest.fetch_stalled", topic=self.topic, reason=reason, partitions=stall.to_dict()
        )
        self.clock.restart()
        if isinstance(consumer, GroupConsumer):
            consumer.rebuild(reason)

    def _offsets(
        self, consumer: Any, assigned: dict[int, Any]
    ) -> tuple[dict[int, int], dict[int, int]]:
        """(partition -> offset watched, partition -> end offset) of the topic now."""
        state = self.inspector.state(self.topic)
        offsets: dict[int, int] = {}
        for partition, tp in assigned.items():
            position = consumer.position(tp, timeout_ms=POSITION_TIMEOUT_MS)
            if position is not None:  # None: not known yet (just assigned, broker away)
                offsets[partition] = int(position)
        group = consumer.config["group_id"]
        if (self.inspector.members(group) or 1) > 1:
            return offsets, state.end_offsets
        committed = self.inspector.committed(group, self.topic)
        others = [p for p in state.end_offsets if p not in assigned]
        unknown = [p for p in others if p not in committed and state.end_offsets[p] > 0]
        begins = self.inspector.beginnings(self.topic, unknown) if unknown else {}
        return {p: committed.get(p, begins.get(p, 0)) for p in others} | offsets, state.end_offsets
