"""An ingest on its own thread against a test's broker and database, as ``clientele ingest``
runs it (same consumer, producer and supervisor), and the commands the tests send it."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any
from uuid import uuid4

import orjson
from kafka.errors import UnknownTopicOrPartitionError

from commands.service import CommandService
from consumers.ingest import CommandIngest
from infra import kafka
from infra.kafka_group import GroupConsumer, group_consumer
from infra.kafka_topics import TopicInspector
from infra.local_services import KafkaBroker
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from projections.framework import ensure_schema
from projections.registry import all_projectors
from tests.integration.kafka_support import read_topic

PARTITIONS = 12
KEY = b"same-partition"  # every command on one partition: coordinates repeat across instances


class Running:
    """An ingest on its own thread, with what it needs; :meth:`close` stops it."""

    def __init__(
        self,
        broker: KafkaBroker,
        postgres_url: str,
        flush_timeout: float,
        partitions: int = PARTITIONS,
        consumer: GroupConsumer | None = None,
        stall_seconds: float = 15.0,
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

    def publish_to_each_partition(self, tag: str, count: int, partitions: int = 6) -> list[str]:
        """Send ``count`` keyed registrations to each of ``partitions``; their keys."""
        keys: list[str] = []
        for p in range(partitions):
            commands = keyed(f"{tag}{p}", count)
            self.publish(commands, partition=p)
            keys += [c["idempotency_key"] for c in commands]
        return keys

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
