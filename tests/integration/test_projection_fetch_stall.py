"""A projection consumer whose Kafka member stops fetching while its group still hears it is
replaced, and what was written meanwhile is applied (reliability run 3: ``clientele consume``
idle in ``KafkaConsumer.poll`` for minutes after the broker lost its topics, logging nothing,
while the relay had republished and new events waited on the topic).

The stall is made with kafka-python's own ``pause`` (the member stays in its group, answers
heartbeats and fetches nothing): the real broker, group and database, nothing mocked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from uuid import uuid4

import pytest
import structlog
from kafka import KafkaConsumer, TopicPartition

from commands import messages as m
from commands.service import CommandService, Context
from consumers.kafka_projection import ProjectionConsumer
from consumers.relay import Relay
from consumers.store_feed import StoreFeed
from infra import kafka
from infra.kafka_group import GroupConsumer, group_consumer
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


@dataclass
class Setup:
    topics: kafka.Topics
    store: EventStore
    service: CommandService
    read_store: ReadStore
    relay: Relay
    group: str
    stack: ExitStack

    def worker(self, consumer: KafkaConsumer | GroupConsumer, bootstrap: str) -> ProjectionConsumer:
        return ProjectionConsumer(
            consumer,
            self.relay.producer,
            topic=self.topics.events,
            group=self.group,
            read_store=self.read_store,
            projectors=[by_name("profiles")],
            personal=self.store.personal,
            feed=StoreFeed(self.store),
            inspector=self.stack.enter_context(closing(TopicInspector(bootstrap))),
            stall_seconds=STALL_S,
        )


@pytest.fixture
def setup(broker: KafkaBroker, postgres_url: str) -> Iterator[Setup]:
    """A topic of :data:`PARTITIONS`, the store, the profiles read model, a relay."""
    topics = kafka.Topics(f"stall{uuid4().hex[:6]}.")
    kafka.ensure_topics(broker.bootstrap, topics.all(), partitions=PARTITIONS)
    with ExitStack() as stack:
        store = stack.enter_context(closing(EventStore(postgres_url)))
        read_store = stack.enter_context(closing(open_read_store(postgres_url)))
        checkpoints = stack.enter_context(closing(open_read_store(postgres_url)))
        ensure_schema(read_store, [by_name("profiles")])
        producer = kafka.producer(broker.bootstrap)
        stack.callback(producer.close, 5)
        relay = Relay(StoreFeed(store), producer, topics.events, checkpoints)
        service = CommandService(store, index_key="k")
        group = f"stall-{uuid4().hex[:6]}"
        yield Setup(topics, store, service, read_store, relay, group, stack)


def write(setup: Setup, count: int, tag: str) -> None:
    setup.service.execute_batch([m.RegisterCustomer(name=f"{tag}{i}") for i in range(count)], CTX)
    setup.relay.catch_up()


def test_a_member_that_fetches_nothing_behind_the_end_is_replaced(
    broker: KafkaBroker, setup: Setup
) -> None:
    read_store = setup.read_store
    worker = setup.worker(
        group_consumer(broker.bootstrap, setup.group, auto_offset_reset="none"), broker.bootstrap
    )
    worker.subscribe()
    setup.stack.callback(worker.consumer.close)
    before = profile_versions(read_store)
    write(setup, 60, "a")
    assert step_until(worker, lambda: profile_versions(read_store) >= before + 60, 120)

    assigned = worker.consumer.assignment()
    assert len(assigned) == PARTITIONS
    worker.consumer.pause(*assigned)  # in its group, heard, fetching nothing
    write(setup, 60, "b")
    with structlog.testing.capture_logs() as logs:
        applied = step_until(
            worker, lambda: profile_versions(read_store) >= before + 120, STALL_S + 90
        )
    assert applied, [e for e in logs if e["log_level"] in {"warning", "error"}]
    (stalled,) = [e for e in logs if e["event"] == "consumer.fetch_stalled"]
    assert stalled["group"] == setup.group and "no progress for" in stalled["reason"]
    behind = stalled["partitions"]
    assert behind and all(p["position"] < p["end"] for p in behind.values())
    assert any(e["event"] == "kafka.consumer_rebuilt" for e in logs)
    assert not [e for e in logs if e["event"] == "consumer.topic_lost"]  # nothing was lost


def test_partitions_no_member_reads_are_watched_through_the_stored_offsets(
    broker: KafkaBroker, setup: Setup
) -> None:
    """As a member left with 4 of 6 partitions (the topic auto-created with 4, then recreated
    with 6, the member's rejoin never sent): partitions 4 and 5 are read by nobody."""
    reader = kafka.consumer(broker.bootstrap, setup.group, auto_offset_reset="none")
    setup.stack.callback(reader.close)
    worker = setup.worker(reader, broker.bootstrap)
    mine = [TopicPartition(setup.topics.events, p) for p in range(4)]
    reader.assign(mine)
    worker.seek(mine)
    write(setup, 60, "c")
    with structlog.testing.capture_logs() as logs:
        step_until(
            worker, lambda: any(e["event"] == "consumer.fetch_stalled" for e in logs), STALL_S + 30
        )
    (stalled,) = [e for e in logs if e["event"] == "consumer.fetch_stalled"]
    assert set(stalled["partitions"]) == {"4", "5"}, stalled
    assert (
        "4 at 0 of" in stalled["reason"]
        and "(the group's offset, not assigned here)" in stalled["reason"]
    )
