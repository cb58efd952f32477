"""Full mode on a real broker and PostgreSQL: burst, SIGKILLs, convergence, order, dead letters.

``clientele relay`` and ``clientele consume`` run as processes, exactly as deployed; the test
writes through the command service, kills each process mid-burst with SIGKILL, restarts it, and
then checks that nothing is missing and nothing was applied twice.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from kafka import KafkaProducer

from commands import messages as m
from commands.segments import SegmentService
from commands.service import CommandService, Context
from consumers.rebuild import rebuild
from consumers.store_feed import StoreFeed
from domain.events import EVENT_TYPES
from infra import kafka
from infra.local_services import KafkaBroker
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from projections.framework import ensure_schema
from projections.registry import all_projectors
from tests.integration.kafka_support import (
    CLIENTELE,
    Proc,
    assert_topic_keeps_per_customer_order,
    full_mode_env,
    read_topic,
)

pytestmark = pytest.mark.integration
CUSTOMERS = 1000
COMMANDS = 10_000
CTX = Context(actor="burst")


def customer_event_count(store: EventStore) -> int:
    return len(StoreFeed(store).read_sealed(0, 10_000_000))


def wait_until_converged(
    store: EventStore, read_store: ReadStore, procs: list[Proc], timeout: float = 240
) -> None:
    """Every projection has applied every event it is fed (sum of per-aggregate versions):
    customer events, and the other events of the store's log it handles."""
    fed = StoreFeed(store).read(0, 10**7)
    customers = customer_event_count(store)
    assert customers == sum(e.type in EVENT_TYPES for e in fed)
    # each projection applies the customer events and the other events of the log it names
    expected = {
        p.name: sum(e.type in EVENT_TYPES or e.type in (p.handles or ()) for e in fed)
        for p in all_projectors()
    }
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
        if applied == expected:
            return
        for proc in procs:
            assert proc.process is not None and proc.process.poll() is None, proc.log.read_text()[
                -3000:
            ]
        time.sleep(0.5)
    tails = "".join(f"\n{proc.log}:\n{proc.log.read_text()[-3000:]}" for proc in procs)
    pytest.fail(f"not converged: {applied} of {expected}{tails}")


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
    env = full_mode_env(postgres_url, broker.bootstrap, prefix)
    relay = Proc(["relay"], env, tmp_path / "relay.log")
    consumer = Proc(["consume"], env, tmp_path / "consume.log")
    second = Proc(["consume"], env, tmp_path / "consume-2.log")
    store = EventStore(postgres_url)
    service = CommandService(store, index_key="k")
    read_models = open_read_store(postgres_url)
    ensure_schema(read_models, all_projectors())
    read_models.close()
    t1_fans = {"field": "tags", "op": "contains", "value": "t1"}
    SegmentService(store).define("t1-fans", "Tagged t1", t1_fans, None, CTX)
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
    env = full_mode_env(postgres_url, broker.bootstrap, prefix)
    ingest = Proc(["ingest"], env, tmp_path / "ingest.log")
    ingest.start()
    try:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        register = {
            "type": "register",
            "name": "Kafka Kim",
            "email": "kim@example.com",
            "external_ids": {"shop": "K1"},
            "idempotency_key": "reg-1",
        }
        ref = {"system": "shop", "id": "K1"}  # the publisher never learns our UUID
        buy = {"type": "purchase", "order_id": "o1", "amount": "9.90", "currency": "EUR"}
        for key, value in [
            (b"shop:K1", orjson.dumps(register)),
            (b"shop:K1", orjson.dumps(register)),  # redelivered: must not register twice
            (b"shop:K1", orjson.dumps(buy | {"customer_ref": ref, "idempotency_key": "buy-1"})),
            (  # registering the external id again (another key): the same customer
                b"shop:K1",
                orjson.dumps(
                    {"type": "register", "name": "Kim", "customer_ref": ref}
                    | {"idempotency_key": "reg-2"}
                ),
            ),
            (  # nobody holds shop:K9: a rejected result naming the ref
                b"shop:K9",
                orjson.dumps(
                    buy
                    | {"customer_ref": {"system": "shop", "id": "K9"}, "idempotency_key": "buy-2"}
                ),
            ),
            (b"bad-1", orjson.dumps({"type": "register", "name": ""})),  # invalid: rejected result
            (b"junk", b"{not json"),  # malformed: dead letter
        ]:
            producer.send(topics.commands, key=key, value=value).get(timeout=30)
        results = read_topic(broker.bootstrap, topics.command_results, 6, timeout=120)
        assert len(results) == 6, ingest.log.read_text()[-3000:]
        first, again = (orjson.loads(r.value) for r in results if r.key == b"reg-1")
        assert first == again and first["status"] == "accepted"
        by_key = {r.key: orjson.loads(r.value) for r in results}
        assert by_key[b"buy-1"]["customer_id"] == first["customer_id"]
        assert by_key[b"reg-2"]["existing"] is True
        assert by_key[b"reg-2"]["customer_id"] == first["customer_id"]
        assert by_key[b"buy-2"]["problem"]["customer_ref"] == {"system": "shop", "id": "K9"}
        assert by_key[b"buy-2"]["problem"]["code"] == "not-found"
        (rejected,) = [o for k, o in by_key.items() if k.startswith(b"kafka:")]  # no key
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


def test_ingest_refuses_unstorable_commands_and_keeps_going(
    broker: KafkaBroker, postgres_url: str, tmp_path: Path
) -> None:
    """Bytes that are not a JSON object go to the DLQ, text no backend stores and unusable
    idempotency keys get a rejected result; nothing crashes or stalls the command topic."""
    prefix = f"t{uuid4().hex[:8]}."
    topics = kafka.Topics(prefix)
    kafka.ensure_topics(broker.bootstrap, topics.all(), partitions=12)
    env = full_mode_env(postgres_url, broker.bootstrap, prefix)
    ingest = Proc(["ingest"], env, tmp_path / "ingest.log")
    ingest.start()
    try:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        nul = {"type": "register", "name": "Nul\u0000Byte", "email": "nul@example.com"}
        for key, value in [
            (b"utf8", b'{"type": "register", "name": "\xff\xfe"}'),  # not UTF-8: DLQ
            (b"surrogate", b'{"type": "register", "name": "\\ud800"}'),  # unpaired: DLQ
            (b"tombstone", None),  # no value at all: DLQ
            (b"nul", orjson.dumps({**nul, "idempotency_key": "nul-1"})),
            (b"int-key", orjson.dumps({"type": "register", "name": "A", "idempotency_key": 42})),
            (
                b"bidi-key",
                orjson.dumps({"type": "register", "name": "A", "idempotency_key": "k\u202e"}),
            ),
            (b"fine", orjson.dumps({**nul, "name": "Nul Byte", "idempotency_key": "nul-2"})),
        ]:
            producer.send(topics.commands, key=key, value=value).get(timeout=30)
        results = read_topic(broker.bootstrap, topics.command_results, 4, timeout=120)
        assert len(results) == 4, ingest.log.read_text()[-3000:]
        outcomes = {r.key.decode(): orjson.loads(r.value) for r in results}
        assert outcomes["nul-1"]["problem"]["field"] == "name"
        assert outcomes["nul-2"]["status"] == "accepted"
        by_coordinates = [o for k, o in outcomes.items() if k.startswith("kafka:")]
        assert sorted(o["problem"]["field"] for o in by_coordinates) == ["idempotency_key"] * 2
        dead = read_topic(broker.bootstrap, topics.dlq(topics.commands), 3, timeout=30)
        assert sorted(r.key for r in dead) == [b"surrogate", b"tombstone", b"utf8"]
        assert all(b"undecodable command" in dict(r.headers)["dlq.reason"] for r in dead)
        store = EventStore(postgres_url)
        try:
            registered = [n for n in store.notifications(0, 100) if n.topic.endswith(":Registered")]
            assert len(registered) == 1
        finally:
            store.close()
        assert ingest.process is not None and ingest.process.poll() is None
        producer.close()
    finally:
        ingest.terminate()
