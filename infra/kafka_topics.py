"""What a topic is right now on the broker: its identity, partitions and end offsets.

The relay and the projection consumers compare this with what they recorded (the offsets the
broker acknowledged or they consumed, the cluster and topic ids they saw) to notice that the
broker lost a topic: restarted without its data, topic deleted and recreated (another topic id,
maybe another partition count), or offsets that went backwards. Nothing here names a missing
topic in a metadata request, which makes some brokers (tansu) create it with their default
partition count.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import NewTopic, OffsetSpec
from kafka.errors import (
    KafkaError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from infra.kafka import TOPIC_MAX_MESSAGE_BYTES, MessageLimits, admin_client, consumer

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TopicState:
    """One look at ``topic``: ``cluster_id`` and ``topic_id`` (None if the broker gives none),
    ``end_offsets`` (partition -> next offset; empty when the topic does not exist)."""

    topic: str
    cluster_id: str | None
    topic_id: str | None
    end_offsets: dict[int, int] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return bool(self.end_offsets)

    @property
    def partitions(self) -> int:
        return len(self.end_offsets)

    def to_dict(self) -> dict[str, Any]:
        """``{"topic", "cluster_id", "topic_id", "partitions", "end_offsets"}`` for logs."""
        return {
            "topic": self.topic,
            "cluster_id": self.cluster_id,
            "topic_id": self.topic_id,
            "partitions": self.partitions,
            "end_offsets": {str(p): o for p, o in sorted(self.end_offsets.items())},
        }


@dataclass(frozen=True)
class Identity:
    """Which topic a recorded offset belongs to: the cluster and the topic incarnation."""

    cluster_id: str | None
    topic_id: str | None

    def differs(self, state: TopicState) -> str | None:
        """Why ``state`` is another topic than the one recorded (None: the same, or unknown)."""
        if self.cluster_id and state.cluster_id and self.cluster_id != state.cluster_id:
            return f"cluster id changed from {self.cluster_id} to {state.cluster_id}"
        if self.topic_id and state.topic_id and self.topic_id != state.topic_id:
            return f"topic id changed from {self.topic_id} to {state.topic_id} (topic recreated)"
        return None


class TopicInspector:
    """Looks at topics on one broker (cluster); :meth:`close` when done."""

    def __init__(self, bootstrap: str, *, request_timeout_ms: int = 15_000) -> None:
        self.bootstrap = bootstrap
        self.admin = admin_client(bootstrap, request_timeout_ms)
        self._reader: KafkaConsumer | None = None  # :meth:`missing`'s, made on first use
        self._reading = threading.Lock()  # a consumer is for one thread at a time

    def state(self, topic: str) -> TopicState:
        """``topic`` as the broker has it now (end offsets empty if it does not exist)."""
        cluster_id = self.admin.describe_cluster().get("cluster_id")
        described = {t["name"]: t for t in self.admin.describe_topics()}  # all: never creates
        if topic not in described:
            return TopicState(topic, cluster_id, None)
        found = described[topic]
        partitions = [TopicPartition(topic, p["partition_index"]) for p in found["partitions"]]
        latest = {tp: OffsetSpec.LATEST for tp in partitions}
        ends = self.admin.list_partition_offsets(latest) if partitions else {}
        topic_id = found.get("topic_id")
        return TopicState(
            topic,
            cluster_id,
            None if topic_id is None else str(topic_id),
            {tp.partition: int(found.offset) for tp, found in ends.items()},
        )

    def missing(self, topic: str, offsets: dict[int, int], timeout: float = 2.0) -> set[int]:
        """The partitions of ``offsets`` (partition -> next offset, > 0) whose record just
        before the offset is not on ``topic``. For offsets beyond a reported end: some brokers
        (tansu) report the end of a partition as the last batch's first offset + 1, so a
        caught-up consumer asks this at every look while records arrive.

        One reader (no group) is kept for these looks: a new consumer per look cost 34 to 60 ms of
        connecting and metadata, a kept one ~6 ms (BENCHMARKS.md, round 9). It is dropped
        (and made again next time) after any error but a missing offset."""
        wanted = {TopicPartition(topic, p): o - 1 for p, o in offsets.items() if o > 0}
        if not wanted:
            return set()
        with self._reading:
            return {tp.partition for tp in wanted} - self._found(wanted, timeout)

    def _found(self, wanted: dict[TopicPartition, int], timeout: float) -> set[int]:
        """The partitions of ``wanted`` whose record at the offset given is there."""
        if self._reader is None:
            self._reader = consumer(
                self.bootstrap, None, auto_offset_reset="none", fetch_max_wait_ms=100
            )
        reader, found = self._reader, set[int]()
        try:
            reader.assign(list(wanted))
            reader.resume(*wanted)  # paused by the last look
            for tp, offset in wanted.items():
                reader.seek(tp, offset)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and len(found) < len(wanted):
                with contextlib.suppress(OffsetOutOfRangeError):
                    for tp, records in reader.poll(timeout_ms=200).items():
                        if any(r.offset == wanted[tp] for r in records):
                            found.add(tp.partition)
                        reader.pause(tp)
        except BaseException:
            self._drop_reader()
            raise
        return found

    def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                reader.close()

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """``group``'s committed offsets on ``topic`` (partition -> next offset; partitions
        with none are absent)."""
        found = self.admin.list_group_offsets(group).get(group, {})
        return {
            tp.partition: int(meta.offset)
            for tp, meta in found.items()
            if tp.topic == topic and meta is not None and meta.offset >= 0
        }

    def beginnings(self, topic: str, partitions: list[int]) -> dict[int, int]:
        """The first offset still held of each of ``topic``'s ``partitions``."""
        earliest = {TopicPartition(topic, p): OffsetSpec.EARLIEST for p in partitions}
        found = self.admin.list_partition_offsets(earliest)
        return {tp.partition: int(offset.offset) for tp, offset in found.items()}

    def members(self, group: str) -> int | None:
        """How many members consumer ``group`` has now (None: the broker does not say)."""
        try:
            described = self.admin.describe_groups([group]).get(group, {})
        except (KafkaError, ValueError):  # ValueError: kafka-python on tansu's reply
            return None
        return len(described.get("members") or [])

    def recreate(
        self, topic: str, partitions: int, limits: MessageLimits, *, attempts: int = 10
    ) -> TopicState:
        """Create ``topic`` with ``partitions`` partitions, deleting it first if it has
        another count (a client may make the broker auto-create it in between: then again,
        up to ``attempts`` times). Only for a topic whose content is worth nothing."""
        config = {TOPIC_MAX_MESSAGE_BYTES: str(limits.topic_bytes(topic))}
        state = self.state(topic)
        for _ in range(attempts):
            if state.exists and state.partitions != partitions:
                with contextlib.suppress(UnknownTopicOrPartitionError):
                    self.admin.delete_topics([topic])
            with contextlib.suppress(TopicAlreadyExistsError):
                self.admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=config)])
            state = self.state(topic)
            if state.partitions == partitions:
                log.warning("kafka.topic_created", **state.to_dict())
                return state
            time.sleep(0.2)
        msg = f"could not recreate topic {topic!r} with {partitions} partitions: {state.to_dict()}"
        raise RuntimeError(msg)

    def close(self) -> None:
        with self._reading:
            self._drop_reader()
        self.admin.close()
