"""The relay keeps two batches in flight (issue 16, round 5) against the real broker: batch N
is sent before the acks of batch N-1 are awaited, yet every checkpoint is written only after
the broker acknowledged everything up to it, and the topic holds every event once, in order per
customer. The producer is the real one, watched from outside (it records what was sent while
which checkpoint stood). Batch N+1 is read while batch N is sent (round 7)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import defaultdict
from typing import Any, cast
from uuid import uuid4

import orjson
import pytest
import structlog
from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from kafka.producer.future import FutureProduceResult, FutureRecordMetadata

from commands import messages as m
from commands.service import CommandService, Context
from consumers import relay as relay_module
from consumers.relay import Relay
from consumers.store_feed import StoreFeed
from infra import kafka
from infra.local_services import KafkaBroker
from infra.published import Published
from infra.readstore import open_read_store
from infra.resilience import transient
from infra.store import EventStore
from tests.integration.kafka_support import (
    assert_topic_keeps_per_customer_order,
    freeze,
    read_topic,
)
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


class ReadsNoted(StoreFeed):
    """The real feed; notes where each read of the relay's starts and what it returned."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(store)
        self.started: defaultdict[int, threading.Event] = defaultdict(threading.Event)
        self.batches: list[list[int]] = []

    def read_published(self, after: int, limit: int) -> list[Published]:
        self.started[after].set()
        found = super().read_published(after, limit)
        self.batches.append([p.position for p in found])
        return found


class SendsWaitForTheNextRead:
    """The real producer; the last record of a full batch is sent only once the read of the
    batch after it started (or 3 s passed: noted as a miss)."""

    def __init__(self, producer: KafkaProducer, feed: ReadsNoted) -> None:
        self.producer, self.feed = producer, feed
        self.overlapped: list[bool] = []

    def send(self, topic: str, **record: Any) -> FutureRecordMetadata:
        position = int(orjson.loads(record["value"])["position"])
        if any(len(b) == BATCH and b[-1] == position for b in self.feed.batches):
            self.overlapped.append(self.feed.started[position].wait(3))
        return cast(FutureRecordMetadata, self.producer.send(topic, **record))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)


def test_the_next_batch_is_read_while_this_one_is_sent(
    broker: KafkaBroker, postgres_url: str
) -> None:
    """The store's answer to the read of batch N+1 is awaited while batch N is sent, not after
    (before round 7: no read started until the batch was sent, every wait missed)."""
    topics = kafka.Topics(f"ahead{uuid4().hex[:6]}.")
    kafka.ensure_topics(broker.bootstrap, topics.all(), 12)
    store = EventStore(postgres_url)
    checkpoints = open_read_store(postgres_url)
    service = CommandService(store, index_key="k")
    service.execute_batch([m.RegisterCustomer(name=f"c{i}") for i in range(90)], Context(actor="t"))
    feed = ReadsNoted(store)
    real = kafka.producer(broker.bootstrap)
    watched = SendsWaitForTheNextRead(real, feed)
    relay = Relay(feed, cast(KafkaProducer, watched), topics.events, checkpoints, batch_size=BATCH)
    try:
        assert relay.catch_up() == 90
        assert watched.overlapped == [True, True, True]  # the full batches: 3 of 25, then 15
    finally:
        real.close(timeout=10)
        checkpoints.close()
        store.close()
    assert_topic_keeps_per_customer_order(broker, topics.events, 90)


class BrokerRefuses:
    """The real producer, except that the broker refuses one record as too large (tansu
    accepts records above a topic's ``max.message.bytes``): its future fails as kafka-python
    fails a record the broker answered ``MESSAGE_TOO_LARGE``, and it never reaches the topic."""

    def __init__(self, producer: KafkaProducer, key: bytes, version: int) -> None:
        self.producer, self.key, self.version = producer, key, version

    def send(self, topic: str, **record: Any) -> FutureRecordMetadata:
        if record["key"] != self.key or orjson.loads(record["value"])["version"] != self.version:
            return cast(FutureRecordMetadata, self.producer.send(topic, **record))
        produced = FutureProduceResult(TopicPartition(topic, 0))
        future = FutureRecordMetadata(produced, 0, -1, None, 0, len(record["value"]), 0)
        produced.failure(MessageSizeTooLargeError("the broker refused it"))
        return future

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)


def attributes(count: int) -> dict[str, str]:
    return {f"note_{i:02d}": "x" * 900 for i in range(count)}  # about 1 kB each


def test_a_refusal_in_an_earlier_batch_keeps_the_park_at_the_lowest_version(
    broker: KafkaBroker, postgres_url: str
) -> None:
    """Batch 1 carries K's v2, which the broker refuses; batch 2 goes out before batch 1's
    acks are read, with K's v3 and v4 and v5, which the producer refuses itself (above the
    limit). K stays parked at v2 (before the fix: v5, so v2 never went out); a restarted
    relay with the limit raised publishes v2 to v5 in order."""
    topics = kafka.Topics(f"low{uuid4().hex[:6]}.")
    limits = kafka.MessageLimits(60_000)
    kafka.ensure_topics(broker.bootstrap, topics.all(), 12, limits)
    store = EventStore(postgres_url)
    checkpoints = open_read_store(postgres_url)
    service = CommandService(store, index_key="k")
    ctx = Context(actor="t")
    (outcome,) = service.execute_batch([m.RegisterCustomer(name="K")], ctx)
    customer = outcome.customer_id
    assert customer is not None
    for command in (
        m.UpdateProfile(customer_id=customer, changes={"attributes": attributes(20)}),
        m.RegisterCustomer(name="other"),
        m.TagCustomer(customer_id=customer, tag="a"),
        m.TagCustomer(customer_id=customer, tag="b"),
        m.UpdateProfile(customer_id=customer, changes={"attributes": attributes(90)}),
    ):
        service.execute(command, ctx)
    key = str(customer).encode()
    real = kafka.producer(broker.bootstrap, limits)
    refusing = cast(KafkaProducer, BrokerRefuses(real, key, 2))
    relay = Relay(StoreFeed(store), refusing, topics.events, checkpoints, batch_size=3)
    try:
        relay.catch_up()  # batches [v1, v2, other] and [v3, v4, v5]
        with checkpoints.transaction() as tx:
            (held,) = relay.lot.listing(tx)
        assert (held.customer_id, held.version) == (str(customer), 2), held
        assert "refused by the broker" in held.reason
        assert relay.held() == {str(customer): 2}
    finally:
        real.close(timeout=10)
    raised = kafka.MessageLimits(200_000)
    kafka.ensure_topics(broker.bootstrap, topics.all(), 12, raised)
    producer = kafka.producer(broker.bootstrap, raised)
    restarted = Relay(StoreFeed(store), producer, topics.events, checkpoints, batch_size=3)
    try:
        assert restarted.redrive(due_only=False) == []
        with checkpoints.transaction() as tx:
            assert restarted.lot.listing(tx) == []
    finally:
        producer.close(timeout=10)
        checkpoints.close()
        store.close()
    records = read_topic(broker.bootstrap, topics.events, 8)
    versions = [orjson.loads(r.value)["version"] for r in records if r.key == key]
    # v3 and v4 flew before v2 was refused: the re-drive sends them again after it
    assert versions == [1, 3, 4, 2, 3, 4, 5], versions


def test_an_ack_the_frozen_broker_never_sends_renews_the_producer(
    broker: KafkaBroker, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay waits on its records' futures, not on a flush: an ack that does not come in
    time renews the producer (the supervisor's retry sends through a new one, not the stuck
    one) and raises a transient error; after the outage everything reaches the topic."""
    monkeypatch.setattr(relay_module, "ACK_TIMEOUT", 2.0)
    topics = kafka.Topics(f"ack{uuid4().hex[:6]}.")
    kafka.ensure_topics(broker.bootstrap, topics.all(), 12)
    store = EventStore(postgres_url)
    checkpoints = open_read_store(postgres_url)
    service = CommandService(store, index_key="k")
    ctx = Context(actor="t")
    service.execute_batch([m.RegisterCustomer(name=f"w{i}") for i in range(5)], ctx)
    producer = kafka.producer(broker.bootstrap)
    relay = Relay(StoreFeed(store), producer, topics.events, checkpoints, batch_size=BATCH)
    pid = int(broker.pid_file.read_text().split()[0])
    try:
        assert relay.catch_up() == 5  # warm: the producer knows the topic
        service.execute_batch([m.RegisterCustomer(name=f"c{i}") for i in range(40)], ctx)
        freeze(pid)
        try:
            started = time.monotonic()
            with (
                structlog.testing.capture_logs() as logs,
                pytest.raises(KafkaTimeoutError) as timed_out,
            ):
                relay.catch_up()
            assert time.monotonic() - started < 10  # bounded by the ack timeout
        finally:
            os.kill(pid, signal.SIGCONT)
        assert transient(timed_out.value)  # the supervisor waits it out, never exits
        renewals = [e["reason"] for e in logs if e["event"] == "kafka.producer_renewed"]
        assert renewals == ["ack not received within 2.0 s"], logs  # before: none
        assert relay.position() <= store.head() - 40
        relay._forget()  # what the supervisor's recovery does before the retry
        relay.catch_up()
        assert relay.position() == store.head()
    finally:
        os.kill(pid, signal.SIGCONT)
        producer.close(timeout=10)
        checkpoints.close()
        store.close()
    assert_topic_keeps_per_customer_order(broker, topics.events, 45)


class FailsWhileSet:
    """The real producer, except that while ``failing`` every record's future fails as one
    whose connection broke (nothing reaches the topic)."""

    def __init__(self, producer: KafkaProducer) -> None:
        self.producer, self.failing = producer, True

    def send(self, topic: str, **record: Any) -> FutureRecordMetadata:
        if not self.failing:
            return cast(FutureRecordMetadata, self.producer.send(topic, **record))
        produced = FutureProduceResult(TopicPartition(topic, 0))
        future = FutureRecordMetadata(produced, 0, -1, None, 0, len(record["value"]), 0)
        produced.failure(KafkaConnectionError("the connection broke"))
        return future

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)


def test_a_failed_batch_drops_the_batch_read_ahead(broker: KafkaBroker, postgres_url: str) -> None:
    """Batch 1's acks fail after batch 2 was sent and while batch 3 is read ahead: the catch-up
    raises, the checkpoint stays, the reader thread is gone, and the retry starts again from
    the checkpoint (nothing read ahead is reused): every event reaches the topic once."""
    topics = kafka.Topics(f"drop{uuid4().hex[:6]}.")
    kafka.ensure_topics(broker.bootstrap, topics.all(), 12)
    store = EventStore(postgres_url)
    checkpoints = open_read_store(postgres_url)
    service = CommandService(store, index_key="k")
    service.execute_batch([m.RegisterCustomer(name=f"c{i}") for i in range(90)], Context(actor="t"))
    real = kafka.producer(broker.bootstrap)
    failing = FailsWhileSet(real)
    feed = StoreFeed(store)
    relay = Relay(feed, cast(KafkaProducer, failing), topics.events, checkpoints, batch_size=BATCH)
    try:
        with pytest.raises(KafkaConnectionError):
            relay.catch_up()
        assert relay.position() == 0
        assert not [t for t in threading.enumerate() if t.name.startswith("relay-read")]
        failing.failing = False
        relay._forget()  # what the supervisor's recovery does before the retry
        assert relay.catch_up() == 90
        assert relay.position() == store.head()
    finally:
        real.close(timeout=10)
        checkpoints.close()
        store.close()
    assert_topic_keeps_per_customer_order(broker, topics.events, 90)
