"""The command ingest survives a broker that loses its topics or stops answering.

This module starts its own broker (tansu, memory storage), so it can restart it without its
data (every topic, offset and group gone) or freeze it (SIGSTOP) without disturbing other
tests. The ingest runs in a thread as ``clientele ingest`` runs it (same consumer, producer
and supervisor).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pytest
import structlog

from commands.service import CommandService
from consumers.ingest import CommandIngest
from infra import kafka
from infra.kafka_group import group_consumer
from infra.kafka_producer import FlushTimedOut
from infra.kafka_topics import TopicInspector
from infra.local_services import KafkaBroker, free_port
from infra.readstore import ReadStore, open_read_store
from infra.resilience import transient
from infra.store import EventStore
from projections.framework import ensure_schema
from projections.registry import all_projectors
from tests.integration.kafka_support import read_topic

pytestmark = pytest.mark.integration
PARTITIONS = 12
KEY = b"same-partition"  # every command on one partition: coordinates repeat across instances


@pytest.fixture(scope="module")
def own_broker() -> Iterator[KafkaBroker]:
    """A broker of this module only: the tests restart and freeze it."""
    root = Path(tempfile.mkdtemp(prefix="clientele-ingest-broker-"))
    server = KafkaBroker(root, free_port())
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


class Running:
    """An ingest on its own thread, with what it needs; :meth:`close` stops it."""

    def __init__(self, broker: KafkaBroker, postgres_url: str, flush_timeout: float) -> None:
        self.topics = kafka.Topics(f"ing{uuid4().hex[:6]}.")
        self.bootstrap = broker.bootstrap
        kafka.ensure_topics(self.bootstrap, self.topics.all(), PARTITIONS)
        self.store = EventStore(postgres_url)
        self.read_store: ReadStore = open_read_store(postgres_url)
        ensure_schema(self.read_store, all_projectors())
        self.producer = kafka.producer(self.bootstrap, dlq=True, flush_timeout=flush_timeout)
        self.ingest = CommandIngest(
            group_consumer(self.bootstrap, f"ingest-{uuid4().hex[:6]}", stall_seconds=15),
            self.producer,
            CommandService(self.store, index_key="k"),
            commands_topic=self.topics.commands,
            results_topic=self.topics.command_results,
            read_store=self.read_store,
        )
        self.thread = threading.Thread(target=self.ingest.run, name="ingest", daemon=True)
        self.thread.start()

    def publish(self, commands: list[dict[str, Any]]) -> None:
        sender = kafka.producer(self.bootstrap)
        try:
            for command in commands:
                sender.send(self.topics.commands, key=KEY, value=orjson.dumps(command))
            sender.flush(timeout=20)
        finally:
            sender.close(timeout=5)

    def results(self, expect: int, timeout: float = 25) -> dict[str, dict[str, Any]]:
        """The results on the topic by idempotency key (the last one of each)."""
        records = read_topic(self.bootstrap, self.topics.command_results, expect, timeout)
        return {r.key.decode(): orjson.loads(r.value) for r in records}

    def close(self) -> None:
        self.ingest.stop()
        self.thread.join(30)
        self.producer.close(timeout=5)
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
