"""The command ingest reads every partition of its topic, whatever the broker did to it: the
topic lost (deleted, or the broker restarted without its data), auto-created by a producer with
the broker's default partition count and repaired, again and again; a member that kept fewer
partitions than the topic has (CI, issue 17)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import orjson
import pytest
import structlog
from kafka import KafkaConsumer as KafkaConsumerType
from kafka.coordinator.assignors.range import RangePartitionAssignor

from infra import kafka
from infra.kafka_group import GroupConsumer
from infra.local_services import KafkaBroker
from tests.integration.ingest_support import Running, delete_commands, keyed, recreate_commands
from tests.integration.kafka_support import private_broker, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_broker() -> Iterator[KafkaBroker]:
    """A broker of this module only: the tests restart it."""
    with private_broker("ingest-partitions") as server:
        yield server


@pytest.mark.parametrize("loss", ["delete", "restart"])
def test_a_topic_lost_auto_created_and_repaired_again_and_again_is_read_on_every_partition(
    own_broker: KafkaBroker, postgres_url: str, loss: str
) -> None:
    """The harness's drain failure (RELIABILITY.md, run 2): the commands topic deleted,
    auto-created by a producer, then repaired with the configured 6 partitions, several times in
    a row with commands in between; a command to every partition afterwards is answered once.
    And the same with the broker restarted without its data instead of the topic deleted (CI's
    failure: every command executed once; an answer may come again, replaying the outcome)."""
    running = Running(own_broker, postgres_url, flush_timeout=10, partitions=6)
    sent: list[str] = []
    try:
        with structlog.testing.capture_logs() as logs:
            sent += running.publish_to_each_partition("warm", 3)  # committed offsets on each
            assert len(running.answered(sent, timeout=30)) == len(sent)
            for round in range(3):
                if loss == "delete":
                    delete_commands(running)
                else:
                    own_broker.stop()  # memory storage: topics, offsets and groups are gone
                    own_broker.start()
                time.sleep(1)
                running.publish(keyed(f"auto{round}", 4))  # the broker auto-creates it (4)
                time.sleep(3)  # the ingest rebalances onto the 4 partitions and reads them
                recreate_commands(running, 6)
                running.publish(keyed(f"between{round}", 2))
                time.sleep(2)
            final = running.publish_to_each_partition("final", 1)
            answered = running.answered(final, timeout=90)
        assert sorted(answered) == sorted(final), (sorted(set(final) - set(answered)), logs)
        time.sleep(2)
        # at least the final answers (already seen): a restart loses the earlier ones, so
        # counting those waited out the read's whole bound; the read still takes every record
        records = read_topic(running.bootstrap, running.topics.command_results, len(final))
        answers: dict[str, list[Any]] = {key: [] for key in final}
        for record in records:
            answers.get(record.key.decode(), []).append(orjson.loads(record.value))
        # executed once: an answer published again (the batch read again after the instance
        # changed, or its flush renewed the producer) replays the recorded outcome
        assert all(a == found[0] for found in answers.values() for a in found), answers
        if loss == "delete":  # nothing made the ingest read a batch twice: answered once
            assert [len(found) for found in answers.values()] == [1] * len(final), answers
        # each rebalance said where the ingest reads: the last one, every partition of the 6
        (*_, last) = [e for e in logs if e["event"] == "ingest.partitions_assigned"]
        assert [p["partition"] for p in last["partitions"]] == list(range(6)), last
        assert all(isinstance(p["position"], int) for p in last["partitions"]), last
    finally:
        running.close()


class _KnownPartitions:
    """A cluster-metadata view that knows only a topic's first ``known`` partitions."""

    def __init__(self, cluster: Any, known: int) -> None:
        self.cluster, self.known = cluster, known

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        found = self.cluster.partitions_for_topic(topic)
        return None if found is None else {p for p in found if p < self.known}


class FourPartitionsKnown(RangePartitionAssignor):  # type: ignore[misc]
    """Assigns as if the topic had 4 partitions: what the CI run's member did, whose metadata
    said 4 (tansu had auto-created the topic with 4 before it was repaired to 6)."""

    @classmethod
    def assign(cls, cluster: Any, members: Any) -> Any:
        return super().assign(_KnownPartitions(cluster, 4), members)


def test_a_member_that_holds_fewer_partitions_than_the_topic_has_is_replaced(
    own_broker: KafkaBroker, postgres_url: str
) -> None:
    """CI (issue 17): after a broker restart the ingest held partitions 0 to 3 of 6 for three
    minutes, never rebalancing, while 4 and 5 filled up (their committed offsets: none). The
    watch sees partitions 4 and 5 stand still behind their end and rebuilds the member, which
    joins with the topic as it is: every command is answered, once."""
    group = f"ingest-{uuid4().hex[:6]}"
    made: list[KafkaConsumerType] = []

    def make() -> KafkaConsumerType:
        stale = (FourPartitionsKnown,) if not made else (RangePartitionAssignor,)
        made.append(
            kafka.consumer(own_broker.bootstrap, group, partition_assignment_strategy=stale)
        )
        return made[-1]

    running = Running(
        own_broker,
        postgres_url,
        flush_timeout=10,
        partitions=6,
        consumer=GroupConsumer(make, group),
        stall_seconds=8,
    )
    try:
        with structlog.testing.capture_logs() as logs:
            sent = running.publish_to_each_partition("p", 2)
            answered = running.answered(sent, timeout=90)
        assert sorted(answered) == sorted(sent), sorted(set(sent) - set(answered))
        stalls = [e for e in logs if e["event"] == "ingest.fetch_stalled"]
        assert stalls and set(stalls[0]["partitions"]) == {"4", "5"}, stalls
        assert "(the group's offset, not assigned here)" in stalls[0]["reason"]
        assert len(made) >= 2  # the member was rebuilt, with the topic as it is
        assert sorted(tp.partition for tp in running.ingest.consumer.assignment()) == list(range(6))
        records = read_topic(running.bootstrap, running.topics.command_results, len(sent))
        keys = [r.key.decode() for r in records]
        assert [keys.count(key) for key in sent] == [1] * len(sent)  # answered once
    finally:
        running.close()
