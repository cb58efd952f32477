"""Read-your-writes on several Kafka partitions: a projection's position is a watermark.

PostgreSQL and the real broker. Ann's and Bob's events alternate in the store's log; Bob's
sit on partition 0, Ann's on partition 1, and partition 0 is delivered first. The profiles
position (and an ``X-Min-Position`` read through the API) must not pass Ann's first event
until it is applied — before, the position was the highest applied, Bob's, and the read
answered at once without Ann — and must reach the end once both partitions are read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer, TopicPartition

from api.http.app import create_app
from bootstrap import build
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
from projections.framework import positions
from projections.profiles import ProfilesProjector
from tests.integration.parking_support import open_read_models, register, tag

pytestmark = [pytest.mark.integration, pytest.mark.backends("postgres")]


@pytest.fixture
def read_store(database_url: str) -> Iterator[ReadStore]:
    read_store = open_read_models(database_url)
    yield read_store
    read_store.close()


def publish(bootstrap: str, topic: str, partition: int, envelopes: list[Envelope]) -> None:
    """Append ``envelopes`` to one partition of ``topic`` (as the relay would, keyed)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for envelope in envelopes:
        value = envelope.to_bytes()
        producer.send(topic, key=envelope.customer_key.encode(), value=value, partition=partition)
    producer.flush()
    producer.close()


def consume(worker: ProjectionConsumer, total: int) -> None:
    """Poll until ``total`` records were handled (bounded)."""
    deadline = time.monotonic() + 60
    while worker.applied < total and time.monotonic() < deadline:
        worker.poll_once(timeout_ms=200)
    assert worker.applied == total


def listed(client: TestClient, headers: dict[str, str]) -> tuple[int, set[str]]:
    """``GET /v1/customers`` (it waits for the profiles read model): status, customer ids."""
    answer = client.get("/v1/customers", headers=headers)
    body: dict[str, Any] = answer.json()
    return answer.status_code, {item["customer_id"] for item in body.get("items", [])}


def test_a_partition_ahead_never_carries_the_position_past_an_unread_event(
    broker: KafkaBroker,
    database_url: str,
    store: EventStore,
    read_store: ReadStore,
    service: CommandService,
    tmp_path: Path,
) -> None:
    ann = register(service, "Ann")
    bob = register(service, "Bob")
    tag(service, ann, "a")
    tag(service, bob, "b")
    sealed = StoreFeed(store).read_sealed(0, 100)
    anns = [e for e in sealed if e.customer_id == ann]
    bobs = [e for e in sealed if e.customer_id == bob]
    assert anns[0].position < bobs[0].position < anns[1].position < bobs[1].position
    prefix = f"w{uuid4().hex[:8]}."
    topic = kafka.Topics(prefix).events
    kafka.ensure_topics(broker.bootstrap, [topic], 2)
    reader = kafka.consumer(broker.bootstrap, None)
    dlq = kafka.producer(broker.bootstrap, dlq=True)
    worker = ProjectionConsumer(
        reader,
        dlq,
        topic=topic,
        group=f"watermark-{uuid4().hex[:6]}",
        read_store=read_store,
        projectors=[ProfilesProjector()],
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
    token = KeyStore(settings.api_keys_file).create("reader", [Role.READER])[1]
    auth = {"Authorization": f"Bearer {token}"}
    try:
        with TestClient(create_app(build(settings))) as client:
            publish(broker.bootstrap, topic, 0, bobs)  # partition 0 runs ahead
            consume(worker, 2)
            assert positions(read_store)["profiles"] < anns[0].position
            waiting = {**auth, "X-Min-Position": str(anns[0].position)}
            status, _ = listed(client, waiting)
            assert status == 503  # waited, bounded: Ann's event is not applied yet

            publish(broker.bootstrap, topic, 1, anns[:1])
            consume(worker, 3)
            assert positions(read_store)["profiles"] == bobs[0].position  # not past Ann's tag
            assert listed(client, waiting) == (200, {str(ann), str(bob)})
            waiting = {**auth, "X-Min-Position": str(anns[1].position)}
            assert listed(client, waiting)[0] == 503

            publish(broker.bootstrap, topic, 1, anns[1:])
            consume(worker, 4)
            assert positions(read_store)["profiles"] == bobs[1].position  # the end
            waiting = {**auth, "X-Min-Position": str(bobs[1].position)}
            assert listed(client, waiting) == (200, {str(ann), str(bob)})
    finally:
        reader.close()
        dlq.close(timeout=10)
