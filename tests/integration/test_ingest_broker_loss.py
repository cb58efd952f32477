"""The command ingest survives a broker that loses its topics or stops answering.

This module starts its own broker (tansu, memory storage), so it can restart it without its
data (every topic, offset and group gone) or freeze it (SIGSTOP) without disturbing other
tests. The ingest runs in a thread as ``clientele ingest`` runs it (same consumer, producer
and supervisor).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import kafka as kafka_python
import orjson
import pytest
import structlog
from kafka import KafkaConsumer as KafkaConsumerType
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import UnknownTopicOrPartitionError
from kafka.structs import OffsetAndMetadata, TopicPartition

from commands.service import CommandService
from consumers.ingest import CommandIngest
from infra import kafka
from infra.kafka_group import GroupConsumer, group_consumer
from infra.kafka_producer import FlushTimedOut
from infra.kafka_topics import TopicInspector
from infra.local_services import KafkaBroker
from infra.readstore import ReadStore, open_read_store
from infra.resilience import transient
from infra.store import EventStore
from projections.framework import ensure_schema
from projections.registry import all_projectors
from tests.integration.kafka_support import private_broker, read_topic

pytestmark = pytest.mark.integration
PARTITIONS = 12
KEY = b"same-partition"  # every command on one partition: coordinates repeat across instances


@pytest.fixture(scope="module")
def own_broker() -> Iterator[KafkaBroker]:
    """A broker of this module only: the tests restart and freeze it."""
    with private_broker("ingest") as server:
        yield server


class Running:
    """An ingest on its own thread, with what it needs; :meth:`close` stops it."""

    def __init__(
        self,
        broker: KafkaBroker,
        postgres_url: str,
        flush_timeout: float,
        partitions: int = PARTITIONS,
        consumer: GroupConsumer | None = None,
        stall_seconds: float = 60.0,
    ) -> None:
        self.topics = kafka.Topics(f"ing{uuid4().hex[:6]}.")
        self.bootstrap = broker.bootstrap
        kafka.ensure_topics(self.bootstrap, self.topics.all(), partitions)
        self.store = EventStore(postgres_url)
        self.read_store: ReadStore = open_read_store(postgres_url)
        ensure_schema(self.read_store, all_projectors())
        self.producer = kafka.producer(self.bootstrap, dlq=True, flush_timeout=flush_timeout)
        self.inspector = TopicInspector(self.bootstrap)
        self.ingest = CommandIngest(
            consumer
            or group_consumer(self.bootstrap, f"ingest-{uuid4().hex[:6]}", stall_seconds=15),
            self.producer,
            CommandService(self.store, index_key="k"),
            commands_topic=self.topics.commands,
            results_topic=self.topics.command_results,
            read_store=self.read_store,
            inspector=self.inspector,
            verify_interval=1.0,
            stall_seconds=stall_seconds,
        )
        self.thread = threading.Thread(target=self.ingest.run, name="ingest", daemon=True)
        self.thread.start()

    def publish(self, commands: list[dict[str, Any]], partition: int | None = None) -> None:
        """Send ``commands`` with the same key (one partition), or to ``partition``; as a
        client that lets the broker auto-create a missing topic (as the harness's load does)."""
        sender = kafka.producer(self.bootstrap, allow_auto_create_topics=True)
        try:
            for command in commands:
                value = orjson.dumps(command)
                if partition is None:
                    sender.send(self.topics.commands, key=KEY, value=value)
                else:
                    sender.send(self.topics.commands, value=value, partition=partition)
            sender.flush(timeout=20)
        finally:
            sender.close(timeout=5)

    def results(self, expect: int, timeout: float = 25) -> dict[str, dict[str, Any]]:
        """The results on the topic by idempotency key (the last one of each)."""
        records = read_topic(self.bootstrap, self.topics.command_results, expect, timeout)
        return {r.key.decode(): orjson.loads(r.value) for r in records}

    def answered(self, keys: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        """The results of ``keys`` on the topic, once all are there (or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.results(len(keys), timeout=5)
            if set(keys) <= set(found) or time.monotonic() > deadline:
                return {key: found[key] for key in keys if key in found}
            time.sleep(0.5)

    def close(self) -> None:
        self.ingest.stop()
        self.thread.join(30)
        self.producer.close(timeout=5)
        self.inspector.close()
        self.read_store.close()
        self.store.close()


def registrations(tag: str, count: int, keyed: bool) -> list[dict[str, Any]]:
    return [
        {"type": "register", "name": f"{tag} {i}"}
        | ({"idempotency_key": f"{tag}-{uuid4().hex[:8]}"} if keyed else {})
        for i in range(count)
    ]


def accepted_customers(results: dict[str, dict[str, Any]]) -> set[str]:
    assert all(r["status"] == "accepted" for r in results.values()), results
    return {r["customer_id"] for r in results.values()}


def test_commands_on_a_recreated_topic_are_all_executed_once_and_answered(
    own_broker: KafkaBroker, postgres_url: str
) -> None:
    running = Running(own_broker, postgres_url, flush_timeout=10)
    try:
        running.publish(registrations("old", 3, keyed=False) + registrations("old", 2, True))
        old = running.results(5)
        old_unkeyed = [key for key in old if key.startswith("kafka:")]
        assert len(old_unkeyed) == 3  # the first instance keeps the format of before
        assert len(old) == 5 and len(accepted_customers(old)) == 5
        head = running.store.head()

        own_broker.stop()  # memory storage: topics, offsets and groups are gone
        own_broker.start()
        inspector = TopicInspector(running.bootstrap)  # the broker may auto-create them first
        try:
            for topic in (running.topics.commands, running.topics.command_results):
                inspector.recreate(topic, PARTITIONS, kafka.MessageLimits())
        finally:
            inspector.close()
        # Same partition, offsets 0-4 again: the unkeyed ones repeat the old coordinates.
        with structlog.testing.capture_logs() as logs:
            running.publish(registrations("new", 3, keyed=False) + registrations("new", 2, True))
            new = running.results(5)
        assert len(new) == 5, new  # before the fix: none (the ingest waited at offset 5)
        repeated = [key for key in new if key.startswith("kafka:")]
        assert len(repeated) == 3 and not set(repeated) & set(old)
        # a later epoch (the broker may auto-create an instance before the one recreated)
        assert all(key.startswith(f"kafka:{running.topics.commands}#") for key in repeated)
        assert all(key.startswith(f"kafka:{running.topics.commands}:") for key in old_unkeyed)
        assert not accepted_customers(new) & accepted_customers(old)  # executed, not replayed
        assert running.store.head() == 2 * head  # each registration executed exactly once
        assert any(e["event"] == "ingest.topic_recreated" for e in logs), logs
        time.sleep(2)
        assert len(running.results(5, timeout=5)) == 5  # nothing executed twice meanwhile
        assert running.store.head() == 2 * head
    finally:
        running.close()


def test_a_flush_the_broker_cannot_complete_is_bounded_and_the_batch_retried(
    own_broker: KafkaBroker, postgres_url: str
) -> None:
    running = Running(own_broker, postgres_url, flush_timeout=2)
    pid = int(own_broker.pid_file.read_text().split()[0])
    frozen_at: list[float] = []
    real_flush = running.producer.flush

    def freeze_then_flush(timeout: float | None = None) -> None:
        """The broker stops answering just before the ingest's first flush (for 8 s)."""
        if not frozen_at:
            os.kill(pid, signal.SIGSTOP)
            frozen_at.append(time.monotonic())
            threading.Timer(8, os.kill, (pid, signal.SIGCONT)).start()
        real_flush(timeout)

    try:
        running.publish(registrations("warm", 1, keyed=True))
        assert len(running.results(1)) == 1
        head = running.store.head()
        running.producer.flush = freeze_then_flush
        with structlog.testing.capture_logs() as logs:
            running.publish(registrations("b", 3, keyed=False) + registrations("b", 3, True))
            renewed_at = None
            deadline = time.monotonic() + 15
            while renewed_at is None and time.monotonic() < deadline:
                if any(e["event"] == "kafka.producer_renewed" for e in logs):
                    renewed_at = time.monotonic()
                time.sleep(0.1)
            results = running.results(7, timeout=40)
        assert renewed_at is not None, logs  # before the fix: the flush waited for the broker
        assert renewed_at - frozen_at[0] < 6  # bounded by the flush timeout, not the outage
        (renewal,) = [e for e in logs if e["event"] == "kafka.producer_renewed"]
        assert "flush not done within 2" in renewal["reason"]
        assert len(results) == 7 and len(accepted_customers(results)) == 7
        assert running.store.head() == 7 * head  # each command executed once, none lost
    finally:
        os.kill(pid, signal.SIGCONT)
        running.close()


def test_every_producer_flush_is_bounded_and_a_resend_after_the_outage_lands(
    own_broker: KafkaBroker,
) -> None:
    """The kind behind the ingest's flush: what the relay, the membership publisher and the
    campaign dispatcher flush through. A frozen broker costs one bounded, transient error."""
    topic = f"flush{uuid4().hex[:6]}"
    kafka.ensure_topics(own_broker.bootstrap, [topic], PARTITIONS)
    pid = int(own_broker.pid_file.read_text().split()[0])
    producer = kafka.producer(own_broker.bootstrap, flush_timeout=1.5)
    try:
        producer.send(topic, key=b"k", value=b"warm").get(timeout=20)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            for i in range(3):
                producer.send(topic, key=b"k", value=f"v{i}".encode())
            with (
                structlog.testing.capture_logs() as logs,
                pytest.raises(FlushTimedOut) as timed_out,
            ):
                producer.flush()
            assert time.monotonic() - started < 5  # before the fix: until the broker is back
        finally:
            os.kill(pid, signal.SIGCONT)
        assert transient(timed_out.value)  # the supervisor waits it out, never exits
        assert [e["reason"] for e in logs if e["event"] == "kafka.producer_renewed"] == [
            "flush not done within 1.5 s"
        ]
        for i in range(3):  # the caller sends its batch again: a fresh producer takes it
            producer.send(topic, key=b"k", value=f"v{i}".encode())
        producer.flush(timeout=30)
        values = [r.value for r in read_topic(own_broker.bootstrap, topic, 4, timeout=15)]
        assert {b"warm", b"v0", b"v1", b"v2"} <= set(values)
    finally:
        producer.close(timeout=5)


def keyed(tag: str, count: int) -> list[dict[str, Any]]:
    return registrations(tag, count, keyed=True)


def recreate_commands(running: Running, partitions: int) -> None:
    """What the relay's topic repair does: delete the commands topic and create it again."""
    inspector = TopicInspector(running.bootstrap)
    try:
        with contextlib.suppress(UnknownTopicOrPartitionError):
            inspector.admin.delete_topics([running.topics.commands])
        inspector.recreate(running.topics.commands, partitions, kafka.MessageLimits())
    finally:
        inspector.close()


def delete_commands(running: Running) -> None:
    inspector = TopicInspector(running.bootstrap)
    try:
        inspector.admin.delete_topics([running.topics.commands])
    finally:
        inspector.close()


@pytest.mark.parametrize("loss", ["delete", "restart"])
def test_a_topic_lost_auto_created_and_repaired_again_and_again_is_read_on_every_partition(
    own_broker: KafkaBroker, postgres_url: str, loss: str
) -> None:
    """The harness's drain failure (RELIABILITY.md, run 2): the commands topic deleted,
    auto-created by a producer, then repaired with the configured 6 partitions, several times in
    a row with commands in between; a command to every partition afterwards is answered once.
    And the same with the broker restarted without its data instead of the topic deleted."""
    running = Running(own_broker, postgres_url, flush_timeout=10, partitions=6)
    sent: list[str] = []
    try:
        with structlog.testing.capture_logs() as logs:
            for p in range(6):  # the group has committed offsets on every partition
                commands = keyed(f"warm{p}", 3)
                running.publish(commands, partition=p)
                sent += [c["idempotency_key"] for c in commands]
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
            final: list[str] = []
            for p in range(6):
                commands = keyed(f"final{p}", 1)
                running.publish(commands, partition=p)
                final += [c["idempotency_key"] for c in commands]
            answered = running.answered(final, timeout=90)
        assert sorted(answered) == sorted(final), (sorted(set(final) - set(answered)), logs)
        time.sleep(2)
        records = read_topic(running.bootstrap, running.topics.command_results, len(sent))
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


def test_a_new_topic_instance_seen_while_no_partition_is_assigned_is_followed(
    own_broker: KafkaBroker, postgres_url: str
) -> None:
    """Run 2's ingest log: after the broker lost its groups, the consumer (between two
    assignments) saw a new topic id with no partition assigned, and the seek to the new
    instance's beginning raised ``ValueError: No partitions are currently assigned`` after
    the new id was recorded: the instance counted as followed although nothing was sought.

    And the review's sequence: the group's committed offset on a partition is an old-instance
    position (10: committed after a batch 0-9 read before the change), the new instance holds
    15 commands there (0-14). The partitions assigned next must be read from the new
    instance's beginning: before the fix reading started at 10, commands 0-9 never ran."""
    running = Running(own_broker, postgres_url, flush_timeout=10, partitions=6)
    try:
        running.ingest.stop()
        running.thread.join(30)
        topic = running.topics.commands
        commands = keyed("late", 15)
        running.publish(commands, partition=0)  # the new instance's offsets 0-14
        group = f"ingest-{uuid4().hex[:6]}"
        commit_old_position(running.bootstrap, group, topic, offset=10)
        reader = group_consumer(running.bootstrap, group)
        ingest = CommandIngest(
            reader,
            running.producer,
            CommandService(running.store, index_key="k"),
            commands_topic=topic,
            results_topic=running.topics.command_results,
        )
        try:
            reader.subscribe([topic])
            assert reader.partitions_for_topic(topic)  # metadata with the topic's id
            assert not reader.assignment()  # not joined yet: nothing assigned
            ingest.topic_id = "an-earlier-instance"
            with structlog.testing.capture_logs() as logs:
                assert ingest._recreated()  # before the fix: ValueError
            assert ingest.topic_id == ingest._metadata_topic_id()
            (logged,) = [e for e in logs if e["event"] == "ingest.topic_recreated"]
            assert logged["partitions"] == []
            keys = [c["idempotency_key"] for c in commands]
            handled, deadline = 0, time.monotonic() + 30
            with structlog.testing.capture_logs() as logs:
                while handled < len(commands) and time.monotonic() < deadline:
                    handled += ingest.poll_once(timeout_ms=1_000)
            assert len(accepted_customers(running.answered(keys, 10))) == 15
            (rewound,) = [e for e in logs if e["event"] == "ingest.topic_rewound"]
            assert rewound["partitions"] == list(range(6))
        finally:
            reader.close()
    finally:
        running.close()


def commit_old_position(bootstrap: str, group: str, topic: str, offset: int) -> None:
    """Commit ``offset`` for ``group`` on ``topic``'s partition 0 (as after an old batch)."""
    member = kafka_python.KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    try:
        partition = TopicPartition(topic, 0)
        member.assign([partition])
        member.commit({partition: OffsetAndMetadata(offset, "", -1)})
        assert member.committed(partition) == offset
    finally:
        member.close()


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
            sent: list[str] = []
            for p in range(6):
                commands = keyed(f"p{p}", 2)
                running.publish(commands, partition=p)
                sent += [c["idempotency_key"] for c in commands]
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
