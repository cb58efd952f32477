"""A projection consumer whose Kafka member stops fetching while its group still hears it is
replaced, and what was written meanwhile is applied (reliability run 3: ``clientele consume``
idle in ``KafkaConsumer.poll`` for minutes after the broker lost its topics, logging nothing,
while the relay had republished and new events waited on the topic).

The stall is made with kafka-python's own ``pause`` (the member stays in its group, answers
heartbeats and fetches nothing): the real broker, group and database, nothing mocked.
"""

from __future__ import annotations

import time
from uuid import uuid4

import pytest
import structlog

from commands import messages as m
from commands.service import CommandService, Context
from consumers.kafka_projection import ProjectionConsumer
from consumers.relay import Relay
from consumers.store_feed import StoreFeed
from infra import kafka
from infra.kafka_group import group_consumer
from infra.kafka_topics import TopicInspector
from infra.local_services import KafkaBroker
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from projections.framework import ensure_schema
from projections.registry import by_name

pytestmark = pytest.mark.integration
CTX = Context(actor="stall")
PARTITIONS = 6
STALL_S = 4.0


def profile_versions(read_store: ReadStore) -> int:
    with read_store.transaction() as tx:
        row = tx.fetchone("SELECT COALESCE(SUM(version), 0) FROM profiles_versions")
    return int(row[0]) if row is not None else 0


def step_until(worker: ProjectionConsumer, done: object, within: float) -> bool:
    """What the consumer's loop does (poll, look at the topic every second) until ``done()``."""
    deadline = time.monotonic() + within
    next_verify = 0.0
    while time.monotonic() < deadline:
        worker.poll_once(timeout_ms=200)
        if time.monotonic() >= next_verify:
            next_verify = time.monotonic() + 1.0
            worker.verify()
        if done():  # type: ignore[operator]
            return True
    return False


def test_a_member_that_fetches_nothing_behind_the_end_is_replaced(
    broker: KafkaBroker, postgres_url: str
) -> None:
    topics = kafka.Topics(f"stall{uuid4().hex[:6]}.")
    kafka.ensure_topics(broker.bootstrap, topics.all(), partitions=PARTITIONS)
    store = EventStore(postgres_url)
    service = CommandService(store, index_key="k")
    read_store = open_read_store(postgres_url)
    checkpoints = open_read_store(postgres_url)
    profiles = by_name("profiles")
    ensure_schema(read_store, [profiles])
    producer = kafka.producer(broker.bootstrap)
    inspector = TopicInspector(broker.bootstrap)
    relay = Relay(StoreFeed(store), producer, topics.events, checkpoints)
    group = f"stall-{uuid4().hex[:6]}"
    worker = ProjectionConsumer(
        group_consumer(broker.bootstrap, group, auto_offset_reset="none"),
        producer,
        topic=topics.events,
        group=group,
        read_store=read_store,
        projectors=[profiles],
        personal=store.personal,
        feed=StoreFeed(store),
        inspector=inspector,
        stall_seconds=STALL_S,
    )
    worker.subscribe()
    try:
        service.execute_batch([m.RegisterCustomer(name=f"a{i}") for i in range(60)], CTX)
        relay.catch_up()
        before = profile_versions(read_store)
        assert step_until(worker, lambda: profile_versions(read_store) >= before + 60, 120)

        assigned = worker.consumer.assignment()
        assert len(assigned) == PARTITIONS
        worker.consumer.pause(*assigned)  # in its group, heard, fetching nothing
        service.execute_batch([m.RegisterCustomer(name=f"b{i}") for i in range(60)], CTX)
        relay.catch_up()
        with structlog.testing.capture_logs() as logs:
            applied = step_until(
                worker, lambda: profile_versions(read_store) >= before + 120, STALL_S + 90
            )
        assert applied, [e for e in logs if e["log_level"] in {"warning", "error"}]
        (stalled,) = [e for e in logs if e["event"] == "consumer.fetch_stalled"]
        assert stalled["group"] == group and "no progress for" in stalled["reason"]
        behind = stalled["partitions"]
        assert behind and all(p["position"] < p["end"] for p in behind.values())
        assert any(e["event"] == "kafka.consumer_rebuilt" for e in logs)
        assert not [e for e in logs if e["event"] == "consumer.topic_lost"]  # nothing was lost
    finally:
        worker.consumer.close()
        producer.close(timeout=5)
        inspector.close()
        checkpoints.close()
        read_store.close()
        store.close()
