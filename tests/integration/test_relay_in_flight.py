"""The relay keeps two batches in flight (issue 16, round 5) against the real broker: batch N
is sent before the acks of batch N-1 are awaited, yet every checkpoint is written only after
the broker acknowledged everything up to it, and the topic holds every event once, in order per
customer. The producer is the real one, watched from outside (it records what was sent while
which checkpoint stood)."""

from __future__ import annotations

from typing import Any, cast
from uuid import uuid4

import orjson
import pytest
from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from commands import messages as m
from commands.service import CommandService, Context
from consumers.relay import Relay
from consumers.store_feed import StoreFeed
from infra import kafka
from infra.local_services import KafkaBroker
from infra.readstore import open_read_store
from infra.store import EventStore
from tests.integration.kafka_support import assert_topic_keeps_per_customer_order
from tests.integration.test_kafka_full_mode import customer_event_count

pytestmark = pytest.mark.integration
BATCH = 25


class Watched:
    """The real producer; each send notes the relay's checkpoint at that moment and checks
    that every record at or below it was acknowledged already."""

    def __init__(self, producer: KafkaProducer) -> None:
        self.producer = producer
        self.relay: Relay | None = None
        self.futures: list[tuple[int, FutureRecordMetadata]] = []
        self.sends: list[tuple[int, int]] = []  # (position sent, checkpoint then)

    def send(self, topic: str, **record: Any) -> FutureRecordMetadata:
        assert self.relay is not None
        checkpoint = self.relay.position()
        unacknowledged = [p for p, f in self.futures if p <= checkpoint and not f.is_done]
        assert unacknowledged == [], (checkpoint, unacknowledged[:5])
        future = self.producer.send(topic, **record)
        position = int(orjson.loads(record["value"])["position"])
        self.futures.append((position, future))
        self.sends.append((position, checkpoint))
        return future

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)


def test_two_batches_in_flight_checkpoint_only_after_their_acks(
    broker: KafkaBroker, postgres_url: str
) -> None:
    topics = kafka.Topics(f"fly{uuid4().hex[:6]}.")
    kafka.ensure_topics(broker.bootstrap, topics.all(), 12)
    store = EventStore(postgres_url)
    checkpoints = open_read_store(postgres_url)
    service = CommandService(store, index_key="k")
    ctx = Context(actor="t")
    ids = [
        o.customer_id
        for o in service.execute_batch([m.RegisterCustomer(name=f"c{i}") for i in range(60)], ctx)
        if o.customer_id
    ]
    for tag in ("a", "b", "c"):
        service.execute_batch([m.TagCustomer(customer_id=c, tag=tag) for c in ids], ctx)
    total = customer_event_count(store)
    watched = Watched(kafka.producer(broker.bootstrap))
    relay = Relay(
        StoreFeed(store), cast(KafkaProducer, watched), topics.events, checkpoints, batch_size=BATCH
    )
    watched.relay = relay
    try:
        assert relay.catch_up() == total == 240
        last = max(position for position, _ in watched.sends)
        assert relay.position() == last
        assert all(f.is_done and f.succeeded() for _, f in watched.futures)
        # batch N went out while batch N-1 still waited for its acks: the checkpoint then
        # stood more than one batch behind
        assert max(position - checkpoint for position, checkpoint in watched.sends) > BATCH
        assert all(checkpoint < position for position, checkpoint in watched.sends)
    finally:
        watched.producer.close(timeout=10)
        checkpoints.close()
        store.close()
    assert_topic_keeps_per_customer_order(broker, topics.events, total)
