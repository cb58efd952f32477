"""``TopicInspector.missing`` on the real broker: which records just before given offsets are
gone, answered by one kept reader across looks, a deleted topic and its recreation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from uuid import uuid4

import pytest
from kafka.errors import UnknownTopicOrPartitionError

from infra import kafka
from infra.kafka_topics import TopicInspector
from infra.local_services import KafkaBroker

pytestmark = pytest.mark.integration
PARTITIONS = 3


@pytest.fixture
def inspector(broker: KafkaBroker) -> Iterator[TopicInspector]:
    made = TopicInspector(broker.bootstrap)
    yield made
    made.close()


def produce(bootstrap: str, topic: str, count: int) -> dict[int, int]:
    """``count`` records on ``topic``, sent in batches; the next offset of each partition."""
    producer = kafka.producer(bootstrap)
    try:
        sent = [producer.send(topic, key=f"k{i % 11}".encode(), value=b"v") for i in range(count)]
        ends: dict[int, int] = {}
        for future in sent:
            meta = future.get(timeout=10)
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        producer.close(timeout=5)
    return ends


def recreate(bootstrap: str, topic: str) -> None:
    admin = kafka.admin_client(bootstrap)
    try:
        with contextlib.suppress(UnknownTopicOrPartitionError):
            admin.delete_topics([topic])
    finally:
        admin.close()
    kafka.ensure_topics(bootstrap, [topic], PARTITIONS)


def test_missing_answers_each_look_with_one_kept_reader(
    broker: KafkaBroker, inspector: TopicInspector
) -> None:
    topic = f"inspect-{uuid4().hex[:8]}"
    kafka.ensure_topics(broker.bootstrap, [topic], PARTITIONS)
    ends = produce(broker.bootstrap, topic, 300)
    assert len(ends) == PARTITIONS

    assert inspector.missing(topic, ends) == set()
    reader = inspector._reader  # kept for the next look (a new consumer per look cost ~40 ms)
    assert reader is not None
    assert inspector.missing(topic, ends) == set()  # paused partitions are read again
    assert inspector.missing(topic, {0: ends[0] + 5, 1: ends[1]}) == {0}
    assert inspector._reader is reader

    recreate(broker.bootstrap, topic)  # every record gone
    assert inspector.missing(topic, ends) == set(range(PARTITIONS))
    grown = produce(broker.bootstrap, topic, 300)
    assert inspector.missing(topic, grown) == set()  # the same reader follows the new topic


def test_no_offset_past_the_start_asks_nothing(inspector: TopicInspector) -> None:
    assert inspector.missing(f"never-{uuid4().hex[:8]}", {0: 0, 1: 0}) == set()
    assert inspector._reader is None
