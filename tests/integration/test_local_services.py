"""The throwaway services really start, answer on loopback, and stop (no mocks)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from infra.local_services import KafkaBroker, PostgresCluster, free_port, port_open


def test_postgres_starts_answers_and_stops(postgres: PostgresCluster) -> None:
    with psycopg.connect(postgres.url) as connection:
        assert connection.execute("SELECT current_database()").fetchone() == ("clientele",)
    url = postgres.create_database("extra_db")
    assert url.endswith("/extra_db") and postgres.create_database("extra_db") == url


def test_broker_round_trip(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "broker", free_port())
    broker.start()
    try:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
        admin.create_topics([NewTopic("smoke", num_partitions=3, replication_factor=1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        for i in range(30):
            producer.send("smoke", key=f"k{i % 5}".encode(), value=str(i).encode())
        producer.flush(timeout=20)
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=2000)
        partitions = [TopicPartition("smoke", p) for p in range(3)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        received: list[tuple[bytes, int]] = []
        deadline = time.monotonic() + 30
        while len(received) < 30 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received += [(r.key, int(r.value)) for r in records]
        consumer.close()
        assert sorted(v for _, v in received) == list(range(30))
        for key in {k for k, _ in received}:  # per-key order survives partitioning
            values = [v for k, v in received if k == key]
            assert values == sorted(values)
    finally:
        broker.stop()
    assert not port_open(broker.port) and not broker.is_running()
