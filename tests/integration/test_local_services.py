"""The throwaway services really start, answer on loopback, and stop (no mocks).

Run with ``-s`` to see the broker timings. tansu holds a consumer's first JoinGroup for about
half its ``session_timeout_ms`` (kafka-python's default 45 s gives a ~23 s join), so the group
consumer here uses a 6 s session timeout.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from infra.local_services import KafkaBroker, PostgresCluster, free_port, kafka_answers, port_open

pytestmark = pytest.mark.integration

PARTITIONS = 3
MESSAGES = 100
Record = tuple[int, bytes, bytes]  # offset, key, value


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not tmp_path: as root, PostgreSQL runs as `postgres`, which cannot enter pytest's 0700 dirs.
    path = Path(tempfile.mkdtemp(prefix="clientele-services-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cluster(workdir: Path) -> Iterator[PostgresCluster]:
    server = PostgresCluster(workdir / "postgres", free_port(), fast=True)
    server.start()
    yield server
    server.stop()  # no-op once the test has stopped it


@pytest.fixture
def broker(workdir: Path) -> Iterator[KafkaBroker]:
    server = KafkaBroker(workdir / "broker", free_port())
    server.start()
    yield server
    server.stop()


def test_postgres_starts_answers_and_stops(cluster: PostgresCluster) -> None:
    with psycopg.connect(cluster.url) as conn:
        row = conn.execute(
            "SELECT current_database(), current_user, host(inet_server_addr()),"
            " current_setting('fsync'), current_setting('synchronous_commit')"
        ).fetchone()
    assert row == ("clientele", "postgres", "127.0.0.1", "off", "off")

    url = cluster.create_database("extra_db")
    assert url.endswith("/extra_db") and cluster.create_database("extra_db") == url
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE t (n int)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 10)")
        assert conn.execute("SELECT sum(n) FROM t").fetchone() == (55,)

    cluster.start()  # idempotent while running
    PostgresCluster(cluster.data_dir, cluster.port).stop()  # a fresh object (as `dev down`)
    assert not cluster.is_running() and not port_open(cluster.port)


def test_broker_round_trip(broker: KafkaBroker) -> None:
    assert kafka_answers(broker.port)
    topic = f"smoke-{uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
        described = admin.describe_topics([topic])
    finally:
        admin.close()
    assert len(described[0]["partitions"]) == PARTITIONS

    sent = produce(broker.bootstrap, topic)
    assert sum(len(records) for records in sent.values()) == MESSAGES
    assert set(sent) == set(range(PARTITIONS))  # 10 keys spread over all partitions
    partition_of = {key: p for p, records in sent.items() for _, key, _ in records}
    for p, records in sent.items():  # a key lives in one partition, appended in send order
        assert all(partition_of[key] == p for _, key, _ in records)
        assert [offset for offset, _, _ in records] == list(range(len(records)))

    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    started = time.monotonic()
    assigned = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    assigned.assign(partitions)
    assigned.seek_to_beginning(*partitions)
    assert consume_all(assigned) == sent
    assigned.close()
    assign_seconds = time.monotonic() - started

    started = time.monotonic()
    grouped = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=f"g-{uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    assert consume_all(grouped) == sent
    group_seconds = time.monotonic() - started
    grouped.commit()
    committed = {tp.partition: grouped.committed(tp) for tp in partitions}
    grouped.close()
    assert committed == {p: len(records) for p, records in sent.items()}
    print(f"\nassign+seek read: {assign_seconds:.2f}s, group join+read: {group_seconds:.2f}s")

    KafkaBroker(broker.data_dir, broker.port).stop()  # a fresh object (as `dev down`)
    assert not broker.is_running() and not port_open(broker.port)
    assert not broker.pid_file.exists()


def test_a_broker_is_not_started_on_a_port_another_one_listens_on(
    broker: KafkaBroker, workdir: Path
) -> None:
    """tansu binds with SO_REUSEPORT: a second one on the port would start and share it (a
    broker restarted on a port another test's broker took meanwhile)."""
    second = KafkaBroker(workdir / "second", broker.port)
    with pytest.raises(RuntimeError, match=f"port {broker.port} is taken"):
        second.start()
    assert not second.is_running() and broker.is_running()


def produce(bootstrap: str, topic: str) -> dict[int, list[Record]]:
    """MESSAGES keyed records (10 keys) with acks=all, idempotent; what landed where."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        futures = []
        for i in range(MESSAGES):
            key, value = f"customer-{i % 10}".encode(), f"{i:03d}".encode()
            futures.append((key, value, producer.send(topic, key=key, value=value)))
        producer.flush(timeout=20)
        sent: dict[int, list[Record]] = {}
        for key, value, future in futures:  # in send order
            metadata = future.get(timeout=10)
            sent.setdefault(metadata.partition, []).append((metadata.offset, key, value))
    finally:
        producer.close(timeout=10)
    return sent


def consume_all(consumer: KafkaConsumer, seconds: float = 40.0) -> dict[int, list[Record]]:
    """Poll until MESSAGES records arrived (bounded); per partition in arrival order."""
    received: dict[int, list[Record]] = {}
    deadline = time.monotonic() + seconds
    while sum(map(len, received.values())) < MESSAGES and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            received.setdefault(tp.partition, []).extend(
                (r.offset, r.key, r.value) for r in records
            )
    return received
