"""The ingest's stall watch without a broker: which offsets it watches, and what a look the
broker cannot answer does (``consumers/ingest_watch.py``; the real-broker test is
``tests/integration/test_ingest_broker_loss.py``)."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from kafka.errors import KafkaTimeoutError
from kafka.structs import TopicPartition

from consumers.ingest_watch import IngestWatch
from infra.kafka_topics import TopicState

TOPIC = "t.customer.commands"


class Inspector:
    """A topic of 4 partitions, each with 10 records; the group's committed offsets."""

    def __init__(self, members: int | None, committed: dict[int, int]) -> None:
        self._members, self._committed = members, committed
        self.failing = False

    def state(self, topic: str) -> TopicState:
        if self.failing:
            raise KafkaTimeoutError("no answer")
        return TopicState(topic, "c", "id", {p: 10 for p in range(4)})

    def members(self, group: str) -> int | None:
        return self._members

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return dict(self._committed)

    def beginnings(self, topic: str, partitions: list[int]) -> dict[int, int]:
        return {p: 3 for p in partitions}  # retention removed 0-2


class Consumer:
    """A member holding partitions 0 and 1, at ``positions`` (None: not known yet)."""

    config = {"group_id": "g"}

    def __init__(self, positions: dict[int, int | None]) -> None:
        self.positions = positions

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, p) for p in self.positions}

    def position(self, tp: TopicPartition, timeout_ms: int) -> int | None:
        return self.positions[tp.partition]


def watched(inspector: Any, consumer: Any) -> dict[int, int]:
    watch = IngestWatch(inspector, TOPIC, interval=0.0, stall_seconds=0.0)
    offsets, _ = watch._offsets(consumer, {tp.partition: tp for tp in consumer.assignment()})
    return offsets


def test_alone_in_its_group_it_watches_every_partition() -> None:
    """Its own at their positions; the others at the group's committed offsets, or where the
    partition begins when none was committed (not 0: retention may have removed records)."""
    offsets = watched(Inspector(members=1, committed={2: 7}), Consumer({0: 4, 1: 5}))
    assert offsets == {0: 4, 1: 5, 2: 7, 3: 3}


@pytest.mark.parametrize("members", [1, None])
def test_a_broker_that_does_not_say_counts_as_one_member(members: int | None) -> None:
    assert set(watched(Inspector(members, {}), Consumer({0: 4, 1: 5}))) == {0, 1, 2, 3}


def test_with_other_members_it_watches_only_its_own_partitions() -> None:
    """The others' partitions are theirs to watch: their committed offsets stand still while
    they wait out an outage or run a long batch, which is no reason to rebuild this member."""
    assert watched(Inspector(members=2, committed={}), Consumer({0: 4, 1: 5})) == {0: 4, 1: 5}


def test_a_position_not_known_yet_is_not_watched() -> None:
    assert watched(Inspector(members=1, committed={2: 7, 3: 7}), Consumer({0: None, 1: 5})) == {
        1: 5,
        2: 7,
        3: 7,
    }


def test_a_look_the_broker_cannot_answer_is_skipped_and_said() -> None:
    inspector = Inspector(members=1, committed={})
    inspector.failing = True
    watch = IngestWatch(inspector, TOPIC, interval=0.0, stall_seconds=0.0)  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        watch.look(Consumer({0: 4, 1: 5}))  # no exception: the batch already succeeded
    assert [e["event"] for e in logs] == ["ingest.verify_failed"]
    assert "no answer" in logs[0]["error"]


def test_a_partition_standing_still_behind_its_end_is_reported() -> None:
    inspector = Inspector(members=1, committed={2: 10, 3: 10})
    watch = IngestWatch(inspector, TOPIC, interval=0.0, stall_seconds=0.0)  # type: ignore[arg-type]
    consumer = Consumer({0: 4, 1: 10})
    with structlog.testing.capture_logs() as logs:
        watch.look(consumer)  # first look: partition 0 seen at 4
        watch.look(consumer)  # still at 4 behind 10
    (stalled,) = [e for e in logs if e["event"] == "ingest.fetch_stalled"]
    assert stalled["partitions"] == {"0": {"position": 4, "end": 10}}
