"""The command ingest survives a broker that loses its topics or stops answering.

This module starts its own broker (tansu, memory storage), so it can restart it without its
data (every topic, offset and group gone) or freeze it (SIGSTOP) without disturbing other
tests. The ingest runs in a thread as ``clientele ingest`` runs it (same consumer, producer
and supervisor).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from uuid import uuid4

import kafka as kafka_python
import pytest
import structlog
from kafka.structs import OffsetAndMetadata, TopicPartition

from commands.service import CommandService
from consumers.ingest import CommandIngest
from infra import kafka
from infra.kafka_group import group_consumer
from infra.kafka_producer import FlushTimedOut
from infra.kafka_topics import TopicInspector
from infra.local_services import KafkaBroker
from infra.resilience import transient
from tests.integration.ingest_support import (
    PARTITIONS,
    Running,
    accepted_customers,
    keyed,
    registrations,
)
from tests.integration.kafka_support import freeze, private_broker, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_broker() -> Iterator[KafkaBroker]:
    """A broker of this module only: the tests restart and freeze it."""
    with private_broker("ingest") as server:
        yield server


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
            # the group's rejoin on the restarted broker (tansu: up to ~20 s) and, should the
            # member hold a stale assignment, the ingest watch's repair (30 s) come first
            new = running.results(5, timeout=90)
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
    # cancelled at the end: firing later, it would resume the broker the next test freezes
    resume = threading.Timer(8, os.kill, (pid, signal.SIGCONT))

    def freeze_then_flush(timeout: float | None = None) -> None:
        """The broker stops answering just before the ingest's first flush (for 8 s)."""
        if not frozen_at:
            freeze(pid)
            frozen_at.append(time.monotonic())
            resume.start()
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
        resume.cancel()
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
        freeze(pid)
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
