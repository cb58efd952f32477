"""Full mode on a real broker and PostgreSQL: burst, SIGKILLs, convergence, order, dead letters.

``clientele relay`` and ``clientele consume`` run as processes, exactly as deployed; the test
writes through the command service, kills each process mid-burst with SIGKILL, restarts it, and
then checks that nothing is missing and nothing was applied twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from commands import messages as m
from commands.service import CommandService, Context
from consumers.rebuild import rebuild
from consumers.store_feed import StoreFeed
from infra import kafka
from infra.local_services import KafkaBroker
from infra.store import EventStore
from projections.framework import ensure_schema
from projections.readstore import ReadStore, open_read_store
from projections.registry import all_projectors
from projections.segments import ensure_definitions, put_definition

pytestmark = pytest.mark.integration
CLIENTELE = str(Path(sys.executable).parent / "clientele")
CUSTOMERS = 1000
COMMANDS = 10_000
CTX = Context(actor="burst")


class Proc:
    """A clientele process we can SIGKILL and start again."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [CLIENTELE, *self.args], env=self.env, stdout=sink, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()[
            -3000:
        ]
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def customer_event_count(store: EventStore) -> int:
    return len(StoreFeed(store).read(0, 10_000_000))


def wait_until_converged(
    store: EventStore, read_store: ReadStore, procs: list[Proc], timeout: float = 240
) -> None:
    """Every projection has applied every customer event (sum of per-customer versions)."""
    expected = customer_event_count(store)
    deadline = time.monotonic() + timeout
    applied: dict[str, int] = {}
    while time.monotonic() < deadline:
        with read_store.transaction() as tx:
            applied = {
                p.name: int(
                    tx.fetchall(f"SELECT COALESCE(SUM(version), 0) FROM {p.versions_table}")[0][0]
                )
                for p in all_projectors()
            }
        if all(count == expected for count in applied.values()):
            return
        for proc in procs:
            assert proc.process is not None and proc.process.poll() is None, proc.log.read_text()[
                -3000:
            ]
        time.sleep(0.5)
    pytest.fail(f"not converged: {applied} of {expected}")


def wait_for_some_applied(read_store: ReadStore, consumer: Proc, timeout: float = 120) -> None:
    """Kill the consumer only once it is really applying (past its ~20 s group join)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with read_store.transaction() as tx:
            row = tx.fetchone("SELECT COUNT(*) FROM profiles_versions")
        if row is not None and int(row[0]) > 0:
            return
        assert consumer.process is not None and consumer.process.poll() is None
        time.sleep(0.2)
    pytest.fail("consumer applied nothing")


def burst(service: CommandService, rng: random.Random, ids: list[UUID], count: int) -> None:
    commands: list[m.Command] = []
    for i in range(count):
        target = rng.choice(ids)
        kind = rng.random()
        if kind < 0.4:
            commands.append(
                m.RecordContact(customer_id=target, channel="email", direction="inbound")
            )
        elif kind < 0.7:
            commands.append(m.TagCustomer(customer_id=target, tag=f"t{rng.randint(0, 30)}"))
        else:
            commands.append(
                m.RecordPurchase(
                    customer_id=target,
                    order_id=f"o{i}-{uuid4().hex[:6]}",
                    amount=f"{rng.randint(1, 500)}.00",
                    currency="EUR",
                )
            )
        if len(commands) == 500:
            assert all(o.status == "accepted" for o in service.execute_batch(commands, CTX))
            commands = []
    if commands:
        service.execute_batch(commands, CTX)


def test_burst_with_sigkills_converges_exactly(
    broker: KafkaBroker, postgres_url: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid4().hex[:8]}."
    topics = kafka.Topics(prefix)
    kafka.ensure_topics(broker.bootstrap, topics.all(), partitions=12)
    env = {
        **os.environ,
        "CLIENTELE_DATABASE_URL": postgres_url,
        "CLIENTELE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CLIENTELE_KAFKA_TOPIC_PREFIX": prefix,
        "CLIENTELE_LOG_LEVEL": "WARNING",
    }
    relay = Proc(["relay"], env, tmp_path / "relay.log")
    consumer = Proc(["consume"], env, tmp_path / "consume.log")
    second = Proc(["consume"], env, tmp_path / "consume-2.log")
    store = EventStore(postgres_url)
    service = CommandService(store, index_key="k")
    read_models = open_read_store(postgres_url)
    ensure_schema(read_models, all_projectors())
    ensure_definitions(read_models)
    put_definition(
        read_models, "t1-fans", "Tagged t1", {"field": "tags", "op": "contains", "value": "t1"}
    )
    read_models.close()
    consumer.start()
    relay.start()
    read_store = open_read_store(postgres_url)
    try:
        rng = random.Random(7)
        registered = service.execute_batch(
            [m.RegisterCustomer(name=f"C{i}") for i in range(CUSTOMERS)], CTX
        )
        ids = [o.customer_id for o in registered if o.customer_id]
        third = (COMMANDS - CUSTOMERS) // 3
        burst(service, rng, ids, third)
        relay.kill()  # mid-burst: unacknowledged batches are republished after restart
        burst(service, rng, ids, third)
        relay.start()
        wait_for_some_applied(read_store, consumer)
        consumer.kill()  # mid-burst: offsets live with the read models, so nothing is lost or doubled
        burst(service, rng, ids, COMMANDS - CUSTOMERS - 2 * third)
        consumer.start()
        second.start()  # scale out: partitions rebalance between two members, nothing lost
        wait_until_converged(store, read_store, [relay, consumer, second])

        for projector in all_projectors():
            assert (
                rebuild(StoreFeed(store), read_store, projector, verify_only=True).differences == []
            )
        assert_topic_keeps_per_customer_order(broker, topics.events, customer_event_count(store))
        assert_membership_published(broker, topics, read_store)

        poison_and_continue(
            broker, topics, service, store, read_store, ids[0], [relay, consumer, second]
        )
    finally:
        relay.terminate()
        consumer.terminate()
        second.terminate()
        read_store.close()
        store.close()


def read_topic(bootstrap: str, topic: str, expect_at_least: int, timeout: float = 60) -> list[Any]:
    reader = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000
    )
    partitions = [TopicPartition(topic, p) for p in range(12)]
    reader.assign(partitions)
    reader.seek_to_beginning(*partitions)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = reader.poll(timeout_ms=1000)
        records += [r for rs in batch.values() for r in rs]
        if len(records) >= expect_at_least and not batch:
            break
    reader.close()
    return records


def assert_topic_keeps_per_customer_order(broker: KafkaBroker, topic: str, total: int) -> None:
    """Per customer, first deliveries arrive as versions 1, 2, 3, … (replays only repeat)."""
    from infra.envelope import Envelope  # noqa: PLC0415

    seen: dict[UUID, list[int]] = {}
    for record in read_topic(broker.bootstrap, topic, total):
        envelope = Envelope.from_bytes(record.value)
        assert record.key == str(envelope.customer_id).encode()
        seen.setdefault(envelope.customer_id, []).append(envelope.version)
    firsts_total = 0
    for versions in seen.values():
        firsts = [v for i, v in enumerate(versions) if v not in versions[:i]]
        assert firsts == list(range(1, len(firsts) + 1)), versions
        firsts_total += len(firsts)
    assert firsts_total == total


def assert_membership_published(
    broker: KafkaBroker, topics: kafka.Topics, read_store: ReadStore
) -> None:
    """Every recorded entered/exited change reaches customer.segment-membership (from the outbox)."""
    with read_store.transaction() as tx:
        recorded = {
            (r[0], r[1], r[2], r[3])
            for r in tx.fetchall(
                "SELECT segment_id, customer_id, change, position FROM segment_changes"
            )
        }
    assert len(recorded) > 20
    deadline = time.monotonic() + 60
    published: set[tuple[Any, ...]] = set()
    while time.monotonic() < deadline and published != recorded:
        docs = [
            orjson.loads(r.value)
            for r in read_topic(
                broker.bootstrap, topics.segment_membership, len(recorded), timeout=20
            )
        ]
        published = {(d["segment_id"], d["customer_id"], d["change"], d["position"]) for d in docs}
    assert published == recorded


def poison_and_continue(
    broker: KafkaBroker,
    topics: kafka.Topics,
    service: CommandService,
    store: EventStore,
    read_store: ReadStore,
    customer_id: UUID,
    procs: list[Proc],
) -> None:
    """Garbage on customer.events lands in its DLQ with the reason; later events still apply."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    producer.send(topics.events, key=str(customer_id).encode(), value=b"\x00not an envelope").get(
        timeout=30
    )
    producer.close()
    service.execute(m.TagCustomer(customer_id=customer_id, tag="after-poison"), CTX)
    wait_until_converged(store, read_store, procs)
    dead = read_topic(broker.bootstrap, topics.dlq(topics.events), 1, timeout=30)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert b"undecodable envelope" in headers["dlq.reason"]
    assert dead[0].value == b"\x00not an envelope"


def test_ingest_executes_commands_once_and_dead_letters_malformed_ones(
    broker: KafkaBroker, postgres_url: str, tmp_path: Path
) -> None:
    prefix = f"i{uuid4().hex[:8]}."
    topics = kafka.Topics(prefix)
    kafka.ensure_topics(broker.bootstrap, topics.all(), partitions=12)
    env = {
        **os.environ,
        "CLIENTELE_DATABASE_URL": postgres_url,
        "CLIENTELE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CLIENTELE_KAFKA_TOPIC_PREFIX": prefix,
        "CLIENTELE_LOG_LEVEL": "WARNING",
    }
    ingest = Proc(["ingest"], env, tmp_path / "ingest.log")
    ingest.start()
    try:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        register = {
            "type": "register",
            "name": "Kafka Kim",
            "email": "kim@example.com",
            "idempotency_key": "reg-1",
        }
        for key, value in [
            (b"reg-1", orjson.dumps(register)),
            (b"reg-1", orjson.dumps(register)),  # redelivered: must not register twice
            (b"bad-1", orjson.dumps({"type": "register", "name": ""})),  # invalid: rejected result
            (b"junk", b"{not json"),  # malformed: dead letter
        ]:
            producer.send(topics.commands, key=key, value=value).get(timeout=30)
        results = read_topic(broker.bootstrap, topics.command_results, 3, timeout=120)
        assert len(results) == 3, ingest.log.read_text()[-3000:]
        first, again = (orjson.loads(r.value) for r in results if r.key == b"reg-1")
        assert first == again and first["status"] == "accepted"
        rejected = next(
            orjson.loads(r.value) for r in results if orjson.loads(r.value)["status"] == "rejected"
        )
        assert (
            rejected["problem"]["code"] == "validation" and rejected["problem"]["field"] == "name"
        )
        store = EventStore(postgres_url)
        try:
            registered = [n for n in store.notifications(0, 100) if n.topic.endswith(":Registered")]
            assert len(registered) == 1
        finally:
            store.close()
        dead = read_topic(broker.bootstrap, topics.dlq(topics.commands), 1, timeout=30)
        assert len(dead) == 1 and b"undecodable command" in dict(dead[0].headers)["dlq.reason"]
        listed = subprocess.run(
            [CLIENTELE, "dlq", "list", "--topic", "customer.commands"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert "undecodable command" in listed.stdout
        replayed = subprocess.run(
            [CLIENTELE, "dlq", "replay", "--topic", "customer.commands"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert "replayed 1" in replayed.stderr + replayed.stdout
        assert (
            len(read_topic(broker.bootstrap, topics.dlq(topics.commands), 2, timeout=60)) == 2
        )  # still junk
        producer.close()
    finally:
        ingest.terminate()
