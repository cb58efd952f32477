"""A consumer that is behind buffers one fetch of its backlog (two record limits), not all of
it, and still reads every record we allow when several partitions hold one of the largest."""

from __future__ import annotations

import time
from typing import Any
from uuid import uuid4

import pytest
from kafka import KafkaProducer, TopicPartition

from infra import kafka
from infra.local_services import KafkaBroker

pytestmark = pytest.mark.integration

RECORD_BYTES = 1_000
BACKLOG = 6_000  # about 6 MB: a few fetches' worth
BATCH_BYTES = 16_384  # the producer's record batches: a broker may end a fetch past its limit
# by the batch it is in (records travel in whole batches)


def test_a_poll_brings_at_most_one_fetch_of_a_backlog(broker: KafkaBroker) -> None:
    limits = kafka.MessageLimits()
    topics = kafka.Topics(f"f{uuid4().hex[:8]}.")
    kafka.ensure_topics(broker.bootstrap, [topics.events], 12, limits)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, linger_ms=5, batch_size=BATCH_BYTES
    )
    try:
        for number in range(BACKLOG):
            producer.send(topics.events, key=str(number).encode(), value=b"v" * RECORD_BYTES)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    # as many records per poll as are buffered: the first poll shows what one fetch brought
    reader = kafka.consumer(broker.bootstrap, None, limits, max_poll_records=BACKLOG)
    try:
        partitions = [TopicPartition(topics.events, p) for p in range(12)]
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        first: list[Any] = []
        deadline = time.monotonic() + 30
        while not first and time.monotonic() < deadline:
            first = [r for rs in reader.poll(timeout_ms=500).values() for r in rs]
        seen = len(first)
        while seen < BACKLOG and time.monotonic() < deadline:
            seen += sum(len(rs) for rs in reader.poll(timeout_ms=500).values())
    finally:
        reader.close()
    assert first, "nothing fetched in 30 s"
    fetched = sum(len(r.value) + len(r.key) for r in first)
    assert fetched <= 2 * limits.fetch_bytes + BATCH_BYTES  # one fetch's worth of 6 MB
    assert seen == BACKLOG  # and the rest follows, fetch after fetch


@pytest.mark.parametrize("limit", [kafka.DEFAULT_MAX_MESSAGE_BYTES, 3_000_000])
def test_the_largest_records_on_several_partitions_all_arrive(
    broker: KafkaBroker, limit: int
) -> None:
    """A fetch's two record limits cannot hold every partition's largest record: the rest
    must come in the next fetches, dead letters (a little larger) included."""
    limits = kafka.MessageLimits(limit)
    topics = kafka.Topics(f"g{uuid4().hex[:8]}.")
    dead_letters = topics.dlq(topics.events)
    kafka.ensure_topics(broker.bootstrap, [topics.events, dead_letters], 12, limits)
    fits = limit - 200  # the record-batch overhead counts too
    producer = kafka.producer(broker.bootstrap, limits)
    dlq = kafka.producer(broker.bootstrap, limits, dlq=True)
    try:
        for partition in range(5):
            value = bytes([partition]) * fits
            producer.send(topics.events, key=b"k", value=value, partition=partition).get(30)
        headers = [("dlq.reason", b"r" * 2000)]
        dlq.send(dead_letters, key=b"k", value=b"z" * fits, headers=headers, partition=0).get(30)
    finally:
        producer.close(timeout=10)
        dlq.close(timeout=10)
    reader = kafka.consumer(broker.bootstrap, None, limits)
    try:
        partitions = [
            TopicPartition(t, p) for t in (topics.events, dead_letters) for p in range(12)
        ]
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < 6 and time.monotonic() < deadline:
            got += [r for rs in reader.poll(timeout_ms=500).values() for r in rs]
    finally:
        reader.close()
    arrived = sorted((r.topic, r.partition, len(r.value), r.value[:1]) for r in got)
    sent = [(topics.events, p, fits, bytes([p])) for p in range(5)]
    assert arrived == sorted([*sent, (dead_letters, 0, fits, b"z")])
