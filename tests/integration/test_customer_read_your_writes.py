"""Read-your-writes of one customer on several Kafka partitions.

PostgreSQL and the real broker. Ann's and Bob's events alternate in the store's log; Bob's sit
on partition 0, Ann's on partition 1, and partition 0 is delivered first. A projection's
position is the highest it applied (Bob's), so it passes Ann's purchase while that is still
unread. A read of Ann (her RFM, audit trail, consent history, her profile by external id) sent with
``X-Min-Position`` at her purchase must wait for it (here: a bounded wait, then 503 naming the
position just before it) and answer with it once it is applied; before, it answered at once
without the purchase.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer, TopicPartition

from api.http.app import create_app
from bootstrap import build
from commands import messages as m
from commands.service import CommandService
from consumers.kafka_projection import ProjectionConsumer
from consumers.store_feed import StoreFeed
from infra import kafka
from infra.api_keys import KeyStore, Role
from infra.envelope import Envelope
from infra.local_services import KafkaBroker
from infra.readstore import ReadStore
from infra.settings import Settings
from infra.store import EventStore
from projections.analytics import AnalyticsProjector
from projections.audit_history import AuditHistoryProjector
from projections.framework import positions
from projections.profiles import ProfilesProjector
from tests.integration.parking_support import CTX, open_read_models, register, tag

pytestmark = [pytest.mark.integration, pytest.mark.backends("postgres")]
BY_REF = "by-external/shop/a-1"  # Ann's external id


@pytest.fixture
def read_store(database_url: str) -> Iterator[ReadStore]:
    read_store = open_read_models(database_url)
    yield read_store
    read_store.close()


@dataclass(frozen=True)
class Scene:
    """Ann's and Bob's events, a two-partition topic nobody has written yet, the projection
    consumer reading it and an API client (reader and auditor) waiting for Ann's purchase."""

    ann: UUID
    bob: UUID
    registered: list[Envelope]  # Ann's events before Bob's first
    purchase: list[Envelope]  # Ann's purchase and what it changed (her stage)
    bobs: list[Envelope]
    topic: str
    bootstrap: str
    worker: ProjectionConsumer
    client: TestClient
    waiting: dict[str, str]

    def publish(self, partition: int, envelopes: list[Envelope]) -> None:
        """Append ``envelopes`` to one partition of the topic, keyed, as the relay would."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap)
        try:
            for envelope in envelopes:
                key = envelope.customer_key.encode()
                producer.send(self.topic, key=key, value=envelope.to_bytes(), partition=partition)
            producer.flush(timeout=10)
        finally:
            producer.close(timeout=5)

    def consume(self, total: int) -> None:
        """Poll until ``total`` records were handled (bounded)."""
        deadline = time.monotonic() + 60
        while self.worker.applied < total and time.monotonic() < deadline:
            self.worker.poll_once(timeout_ms=200)
        assert self.worker.applied == total

    def problem(self, read: str, at: int | None = None) -> dict[str, Any]:
        """``GET /v1/customers/{read}`` waiting for Ann's purchase (or position ``at``): must
        be a 503 problem."""
        headers = self.waiting if at is None else {**self.waiting, "X-Min-Position": str(at)}
        answer = self.client.get(f"/v1/customers/{read}", headers=headers)
        assert answer.status_code == 503, (read, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        found: dict[str, Any] = answer.json()
        return found


@pytest.fixture
def scene(
    broker: KafkaBroker,
    database_url: str,
    store: EventStore,
    read_store: ReadStore,
    service: CommandService,
    tmp_path: Path,
) -> Iterator[Scene]:
    ann = register(service, "Ann", external_ids={"shop": "a-1"})
    bob = register(service, "Bob")
    bought = service.execute(
        m.RecordPurchase(customer_id=ann, order_id="o-1", amount="12.50", currency="EUR"), CTX
    ).position
    tag(service, bob, "b")
    sealed = StoreFeed(store).read_sealed(0, 100)
    anns = [e for e in sealed if e.customer_id == ann]
    bobs = [e for e in sealed if e.customer_id == bob]
    registered = [e for e in anns if e.position < bobs[0].position]
    purchase = anns[len(registered) :]
    assert registered and len(purchase) == 2 and purchase[-1].position == bought
    assert purchase[0].type == "customer.purchase_recorded"
    assert bought < bobs[-1].position
    prefix = f"r{uuid4().hex[:8]}."
    topic = kafka.Topics(prefix).events
    kafka.ensure_topics(broker.bootstrap, [topic], 2)
    reader = kafka.consumer(broker.bootstrap, None)
    dlq = kafka.producer(broker.bootstrap, dlq=True)
    worker = ProjectionConsumer(
        reader,
        dlq,
        topic=topic,
        group=f"ryw-{uuid4().hex[:6]}",
        read_store=read_store,
        projectors=[ProfilesProjector(), AnalyticsProjector(), AuditHistoryProjector()],
        personal=store.personal,
        feed=StoreFeed(store),
        redrive_interval=3600,  # a parked customer stays parked in this test
    )
    partitions = [TopicPartition(topic, p) for p in range(2)]
    reader.assign(partitions)
    worker.seek(partitions)
    settings = Settings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        kafka_topic_prefix=prefix,
        api_keys_file=tmp_path / "keys.json",
    )
    token = KeyStore(settings.api_keys_file).create("reader", [Role.READER, Role.AUDITOR])[1]
    waiting = {"Authorization": f"Bearer {token}", "X-Min-Position": str(bought)}
    try:
        with TestClient(create_app(build(settings))) as client:
            yield Scene(
                ann,
                bob,
                registered,
                purchase,
                bobs,
                topic,
                broker.bootstrap,
                worker,
                client,
                waiting,
            )
    finally:
        reader.close()
        dlq.close(timeout=10)


def test_a_read_of_one_customer_waits_for_its_event_unread_on_another_partition(
    scene: Scene, read_store: ReadStore
) -> None:
    ann, purchase, client, waiting = scene.ann, scene.purchase, scene.client, scene.waiting
    scene.publish(0, scene.bobs)  # partition 0 runs ahead
    scene.publish(1, scene.registered)  # Ann's purchase not yet
    scene.consume(len(scene.bobs) + len(scene.registered))
    reached = positions(read_store)
    assert min(reached[n] for n in ("profiles", "analytics", "audit")) > purchase[-1].position

    for read in (f"{ann}/rfm", f"{ann}/history", f"{ann}/consents/history", BY_REF):
        problem = scene.problem(read)
        assert problem["type"].endswith("not-caught-up")
        assert problem["position"] == purchase[0].position - 1  # just before it
    for read in ("rfm", "history", "consents/history"):
        mine = client.get(f"/v1/customers/{scene.bob}/{read}", headers=waiting)
        assert mine.status_code == 200, (read, mine.text)  # Bob's are all applied

    scene.publish(1, purchase)
    scene.consume(len(scene.bobs) + len(scene.registered) + len(purchase))
    answer = client.get(f"/v1/customers/{ann}/rfm", headers=waiting)
    assert answer.status_code == 200, answer.text
    assert answer.json()["currency"] == "EUR"  # the purchase it waited for
    trail = client.get(f"/v1/customers/{ann}/history", headers=waiting)
    assert trail.status_code == 200, trail.text
    assert len(trail.json()["items"]) == len(scene.registered) + len(purchase)
    profile = client.get(f"/v1/customers/{BY_REF}", headers=waiting)
    assert profile.status_code == 200, profile.text
    assert profile.json()["version"] == purchase[-1].version


def test_a_customer_parked_at_a_gap_past_the_position_is_named_parked(scene: Scene) -> None:
    """Ann's purchase never arrives and her next event does: she is parked at the purchase's
    version, with the next event's position, past the purchase's one waited for. The read
    names her parked (``customer-parked``), not merely behind."""
    scene.publish(0, scene.bobs)
    scene.publish(1, [*scene.registered, scene.purchase[1]])  # the purchase is lost
    scene.consume(len(scene.bobs) + len(scene.registered) + 1)
    for read in (f"{scene.ann}/rfm", f"{scene.ann}/history", BY_REF):
        problem = scene.problem(read, at=scene.purchase[0].position)
        assert problem["type"].endswith("customer-parked"), problem
        assert problem["version"] == scene.purchase[0].version
