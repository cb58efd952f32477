"""Read-your-writes of one customer on several Kafka partitions.

PostgreSQL and the real broker. Ann's and Bob's events alternate in the store's log; Bob's sit
on partition 0, Ann's on partition 1, and partition 0 is delivered first. A projection's
position is the highest it applied (Bob's), so it passes Ann's purchase while that is still
unread. A read of Ann (her RFM, audit trail, consent history) sent with ``X-Min-Position`` at her
purchase must wait for it (here: a bounded wait, then 503 naming the position just before it)
and answer with it once it is applied; before, it answered at once without the purchase.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

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


@pytest.fixture
def read_store(database_url: str) -> Iterator[ReadStore]:
    read_store = open_read_models(database_url)
    yield read_store
    read_store.close()


def publish(bootstrap: str, topic: str, partition: int, envelopes: list[Envelope]) -> None:
    """Append ``envelopes`` to one partition of ``topic``, keyed, as the relay would."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for envelope in envelopes:
            key = envelope.customer_key.encode()
            producer.send(topic, key=key, value=envelope.to_bytes(), partition=partition)
        producer.flush(timeout=10)
    finally:
        producer.close(timeout=5)


def consume(worker: ProjectionConsumer, total: int) -> None:
    """Poll until ``total`` records were handled (bounded)."""
    deadline = time.monotonic() + 60
    while worker.applied < total and time.monotonic() < deadline:
        worker.poll_once(timeout_ms=200)
    assert worker.applied == total


def test_a_read_of_one_customer_waits_for_its_event_unread_on_another_partition(
    broker: KafkaBroker,
    database_url: str,
    store: EventStore,
    read_store: ReadStore,
    service: CommandService,
    tmp_path: Path,
) -> None:
    ann = register(service, "Ann")
    bob = register(service, "Bob")
    bought = service.execute(
        m.RecordPurchase(customer_id=ann, order_id="o-1", amount="12.50", currency="EUR"), CTX
    ).position
    tag(service, bob, "b")
    sealed = StoreFeed(store).read_sealed(0, 100)
    anns = [e for e in sealed if e.customer_id == ann]
    bobs = [e for e in sealed if e.customer_id == bob]
    assert bought is not None and anns[-1].position == bought
    assert anns[0].position < bobs[0].position < bought < bobs[-1].position
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
            publish(broker.bootstrap, topic, 0, bobs)  # partition 0 runs ahead
            publish(broker.bootstrap, topic, 1, anns[:-1])  # Ann's purchase not yet
            consume(worker, len(bobs) + len(anns) - 1)
            assert (
                min(positions(read_store)[n] for n in ("profiles", "analytics", "audit")) > bought
            )

            for read in ("rfm", "history", "consents/history"):
                answer = client.get(f"/v1/customers/{ann}/{read}", headers=waiting)
                assert answer.status_code == 503, (read, answer.text)
                assert answer.headers["content-type"].startswith("application/problem+json")
                problem = answer.json()
                assert problem["type"].endswith("not-caught-up")
                assert problem["position"] == bought - 1  # just before Ann's purchase
                mine = client.get(f"/v1/customers/{bob}/{read}", headers=waiting)
                assert mine.status_code == 200, (read, mine.text)  # Bob's are all applied

            publish(broker.bootstrap, topic, 1, anns[-1:])
            consume(worker, len(bobs) + len(anns))
            answer = client.get(f"/v1/customers/{ann}/rfm", headers=waiting)
            assert answer.status_code == 200, answer.text
            assert answer.json()["currency"] == "EUR"  # the purchase it waited for
            trail = client.get(f"/v1/customers/{ann}/history", headers=waiting)
            assert trail.status_code == 200, trail.text
            assert len(trail.json()["items"]) == len(anns)
    finally:
        reader.close()
        dlq.close(timeout=10)
