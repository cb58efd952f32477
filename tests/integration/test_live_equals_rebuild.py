"""Every read model is a pure function of the event log: what live feeds build equals a rebuild.

Hypothesis writes random histories of commands — registrations, profile updates, tags,
purchases (some back-dated), contacts, feedback, consent grants and withdrawals, churn and
reactivation, erasures, merges, unmerges, segment (re)definitions with purposes and
time-relative or RFM rules, and refreshes — and lets the live feeds run a little in between:

* **embedded**: the embedded runner feeds every read model from the store's log, in batches of
  a random size; now and then a read model is rebuilt (swapped in) mid-history;
* **full mode**: the read models fed from ``customer.events`` receive the relay's envelopes
  as Kafka hands them over — in order per customer (a customer's key picks its partition),
  partitions interleaved at random, consumed batches redelivered after a "crash", personal
  data opened at consumption — and segments follow the store's log, as ``consume`` runs them.

Then ``rebuild_all(verify_only=True)`` — what ``clientele projections verify`` runs — must find
no difference, row for row, in any read model, on SQLite and on a real PostgreSQL. One
history also goes through a real broker (relay and projection consumer, in-process).

CI runs 200 examples on SQLite and 25 on PostgreSQL (under a minute). A larger run multiplies
both: ``CLIENTELE_PURITY_SCALE=20 .venv/bin/pytest tests/integration/test_live_equals_rebuild.py``
(README, "Tests").
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from commands import messages as m
from commands.segments import SegmentService
from commands.service import CommandService, Context
from consumers.embedded import EmbeddedRunner
from consumers.kafka_projection import ProjectionConsumer
from consumers.rebuild import rebuild, rebuild_all
from consumers.relay import Relay
from consumers.store_feed import StoreFeed
from infra import kafka
from infra.envelope import Envelope
from infra.local_services import KafkaBroker, PostgresCluster, free_port
from infra.store import EventStore
from projections.framework import Binding, Projector, ensure_schema, project
from projections.readstore import ReadStore, open_read_store
from projections.registry import all_projectors

SCALE = float(os.environ.get("CLIENTELE_PURITY_SCALE", "1"))  # more examples: a larger run
CTX = Context(actor="purity")
NAMES = ["Ada", "Bob", "Chloé", "Dan"]
EMAILS = ["ada@example.com", "bob@example.com", "chloe@example.com", None]
TAGS = ["vip", "gold", "newsletter"]
PURPOSES = [None, "email_marketing", "sms_marketing"]
RULES: list[dict[str, Any]] = [
    {"field": "tags", "op": "contains", "value": "vip"},
    {"field": "email", "op": "exists", "value": True},  # personal: gone after an erasure
    {"field": "attributes.city", "op": "eq", "value": "Oslo"},
    {"field": "purchases.count", "op": "gte", "value": 2, "within": "30d"},
    {"not": {"field": "contacts.last_at", "op": "after", "value": "-7d"}},
    {
        "all": [
            {"field": "purchases.total.EUR", "op": "gte", "value": "50"},
            {"not": {"field": "tags", "op": "contains", "value": "gold"}},
        ]
    },
    {"field": "rfm.group", "op": "in", "value": ["champions", "loyal", "potential_loyalist"]},
    {
        "any": [
            {"field": "rfm.f", "op": "gte", "value": 2},
            {"field": "status", "op": "eq", "value": "churned"},
        ]
    },
]
LIVE_STEPS = {"feed", "relay", "deliver", "crash", "rebuild"}
PARTITIONS = 3

Step = tuple[Any, ...]
person = st.integers(0, 5)
days = st.integers(0, 45)
REGISTER = st.tuples(st.just("register"), st.integers(0, 3), st.integers(0, 3), st.booleans())
STEPS: st.SearchStrategy[Step] = st.one_of(
    REGISTER,
    st.tuples(st.just("update"), person, st.sampled_from(["name", "email", "city", "no-city"])),
    st.tuples(st.sampled_from(["tag", "untag"]), person, st.sampled_from(TAGS)),
    st.tuples(st.just("buy"), person, days, st.sampled_from(["5", "20.50", "60"]), st.booleans()),
    st.tuples(st.just("contact"), person, days),
    st.tuples(st.just("consent"), person, st.sampled_from(PURPOSES[1:]), st.booleans()),
    st.tuples(st.just("feedback"), person, st.integers(0, 10)),
    st.tuples(st.sampled_from(["churn", "reactivate"]), person),
    st.tuples(st.just("erase"), person),
    st.tuples(st.just("merge"), person, person),
    st.tuples(st.just("unmerge"), person, person),
    st.tuples(
        st.just("define"),
        st.integers(0, 2),
        st.integers(0, len(RULES) - 1),
        st.sampled_from(PURPOSES),
    ),
    st.tuples(st.just("refresh"), st.integers(-5, 40)),
    st.tuples(st.just("feed"), st.integers(1, 3)),
    st.tuples(st.just("relay")),
    st.tuples(
        st.sampled_from(["deliver", "crash"]), st.integers(0, PARTITIONS - 1), st.integers(1, 6)
    ),
    st.tuples(st.just("rebuild"), st.integers(0, 3)),
)
HISTORIES = st.tuples(
    st.integers(1, 7),
    st.builds(
        lambda first, then: first + then,
        st.lists(REGISTER, min_size=1, max_size=4),
        st.lists(STEPS, min_size=10, max_size=40),
    ),
)


@dataclass
class Databases:
    """Where one example lives: the event store, and the read stores of the two live feeds."""

    store: str
    embedded: str
    full: str
    cleanup: Callable[[], None] = field(default=lambda: None)


class KafkaLike:
    """``customer.events`` as Kafka hands it over to ``clientele consume``: a partition per
    customer key, in order; partitions consumed in any interleaving; after a crash, consumed
    messages come again. Segments follow the store's log, as ``consume`` runs them."""

    def __init__(self, feed: StoreFeed, read_store: ReadStore, batch_size: int) -> None:
        self.feed, self.read_store = feed, read_store
        projectors = all_projectors()
        self.bindings = [Binding.live(p) for p in projectors if not p.log_order]
        log_ordered = [p for p in projectors if p.log_order]
        self.log = EmbeddedRunner(feed, read_store, log_ordered, batch_size=batch_size)
        self.published = 0
        self.partitions: list[list[Envelope]] = [[] for _ in range(PARTITIONS)]
        self.offsets = [0] * PARTITIONS

    def relay(self) -> None:
        for envelope in self.feed.read_sealed(self.published, 1_000_000):
            key = zlib.crc32(envelope.customer_key.encode()) % PARTITIONS
            self.partitions[key].append(envelope)
            self.published = envelope.position

    def deliver(self, partition: int, count: int) -> None:
        start = self.offsets[partition]
        batch = self.partitions[partition][start : start + count]
        opened = [self.feed.store.personal.open_envelope(e) for e in batch]
        with self.read_store.transaction() as tx:
            project(tx, self.bindings, opened, by_position=False)
        self.offsets[partition] = start + len(batch)

    def crash(self, partition: int, count: int) -> None:
        self.offsets[partition] = max(0, self.offsets[partition] - count)

    def drain(self) -> None:
        self.relay()
        for partition, queue in enumerate(self.partitions):
            self.deliver(partition, len(queue))
        self.log.catch_up()


class History:
    """Runs one generated history against a store and both live feeds."""

    def __init__(self, databases: Databases, batch_size: int, stack: ExitStack) -> None:
        self.store = EventStore(databases.store)
        stack.callback(self.store.close)
        self.service = CommandService(self.store, default_region="DE", index_key="k")
        self.segments = SegmentService(self.store)
        self.feed = StoreFeed(self.store)
        self.read_stores = [open_read_store(databases.embedded), open_read_store(databases.full)]
        for read_store in self.read_stores:
            stack.callback(read_store.close)
            ensure_schema(read_store, all_projectors())
        self.runner = EmbeddedRunner(
            self.feed, self.read_stores[0], all_projectors(), batch_size=batch_size
        )
        self.kafka = KafkaLike(self.feed, self.read_stores[1], batch_size)
        self.ids: list[UUID] = []
        self.now = datetime.now(UTC)

    def who(self, index: int) -> UUID:
        return self.ids[index % len(self.ids)] if self.ids else uuid4()

    def command(self, step: Step, number: int) -> m.Command | None:
        kind, *args = step
        if kind == "register":
            name, email, oslo = args
            attributes = {"city": "Oslo"} if oslo else {}
            return m.RegisterCustomer(name=NAMES[name], email=EMAILS[email], attributes=attributes)
        customer = self.who(args[0])
        if kind == "update":
            updates: dict[str, dict[str, Any]] = {
                "name": {"name": f"{NAMES[number % 4]} {number}"},
                "email": {"email": f"u{number}@example.com"},
                "city": {"attributes": {"city": "Oslo"}},
                "no-city": {"attributes": {"city": None}},
            }
            return m.UpdateProfile(customer_id=customer, changes=updates[args[1]])
        if kind in ("tag", "untag"):
            tagging = m.TagCustomer if kind == "tag" else m.UntagCustomer
            return tagging(customer_id=customer, tag=args[1])
        if kind == "buy":
            ago, amount, euros = args[1:]
            return m.RecordPurchase(
                customer_id=customer,
                order_id=f"o{number}",
                amount=amount,
                currency="EUR" if euros else "USD",
                occurred_at=self.now - timedelta(days=ago),
            )
        if kind == "contact":
            when = self.now - timedelta(days=args[1])
            return m.RecordContact(
                customer_id=customer, channel="email", direction="inbound", occurred_at=when
            )
        if kind == "consent":
            return m.SetConsent(customer_id=customer, purpose=args[1], granted=args[2])
        if kind == "feedback":
            return m.RecordFeedback(customer_id=customer, nps=args[1])
        if kind in ("merge", "unmerge"):
            pairing = m.MergeCustomers if kind == "merge" else m.UnmergeCustomers
            return pairing(customer_id=customer, duplicate_id=self.who(args[1]))
        simple = {"churn": m.ChurnCustomer, "reactivate": m.ReactivateCustomer}
        return simple.get(kind, m.EraseCustomer)(customer_id=customer)

    def run(self, steps: list[Step]) -> None:
        for number, step in enumerate(steps):
            kind = step[0]
            if kind == "define":
                _, segment, rule, purpose = step
                self.segments.define(f"s{segment}", f"S{segment}", RULES[rule], purpose, CTX)
            elif kind == "refresh":
                self.segments.refresh(datetime.now(UTC) + timedelta(days=step[1]), CTX)
            elif kind == "feed":
                for _ in range(step[1]):
                    self.runner.run_once()
                    self.kafka.log.run_once()
            elif kind == "relay":
                self.kafka.relay()
            elif kind in ("deliver", "crash"):
                getattr(self.kafka, kind)(step[1], step[2])
            elif kind == "rebuild":
                projector = all_projectors()[step[1]]
                rebuild(self.feed, self.read_stores[0], projector, batch_size=3)
            else:
                self.execute(self.command(step, number))

    def execute(self, command: m.Command | None) -> None:
        if command is not None:
            (outcome,) = self.service.execute_batch([command], CTX)
            if isinstance(command, m.RegisterCustomer) and outcome.customer_id is not None:
                self.ids.append(outcome.customer_id)

    def verify(self) -> None:
        self.runner.catch_up()
        self.kafka.drain()
        for read_store, feed in zip(self.read_stores, ("embedded", "full"), strict=True):
            results = rebuild_all(self.feed, read_store, all_projectors(), verify_only=True)
            assert {r.name: r.differences for r in results if r.differences} == {}, feed


def check(databases: Databases, history: tuple[int, list[Step]]) -> None:
    batch_size, steps = history
    with ExitStack() as stack:
        stack.callback(databases.cleanup)
        run = History(databases, batch_size, stack)
        run.run(steps)
        run.verify()


def examples(default: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis settings for ``default`` examples times the scale, and a test timeout to match."""
    timeout = pytest.mark.timeout(round(300 * max(1.0, SCALE)))
    chosen = settings(
        max_examples=max(1, round(default * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    return lambda test: timeout(chosen(test))


@examples(200)
@given(history=HISTORIES)
def test_live_equals_rebuild_on_sqlite(history: tuple[int, list[Step]]) -> None:
    home = tempfile.mkdtemp(prefix="clientele-purity-")
    store, embedded, full = (f"sqlite:///{home}/{name}.db" for name in ("s", "e", "f"))
    databases = Databases(store, embedded, full, lambda: shutil.rmtree(home, ignore_errors=True))
    check(databases, history)


@pytest.mark.integration
@examples(25)
@given(history=HISTORIES)
def test_live_equals_rebuild_on_postgres(
    postgres: PostgresCluster, history: tuple[int, list[Step]]
) -> None:
    with fresh_databases(postgres, 2) as (store, full):
        check(Databases(store, store, full), history)


@contextmanager
def fresh_databases(postgres: PostgresCluster, count: int) -> Iterator[list[str]]:
    names = [f"p_{uuid4().hex[:12]}" for _ in range(count)]
    try:
        yield [postgres.create_database(name) for name in names]
    finally:
        with psycopg.connect(postgres.database_url("postgres"), autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------- through a real broker


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    root = Path(tempfile.mkdtemp(prefix="clientele-purity-broker-"))
    server = KafkaBroker(root, free_port())
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.integration
@settings(max_examples=1, deadline=None, phases=[Phase.generate], database=None)
@seed(13)
@given(history=st.tuples(st.just(50), st.lists(STEPS, min_size=30, max_size=30)))
def test_live_through_a_real_broker_equals_rebuild(
    broker: KafkaBroker, postgres: PostgresCluster, history: tuple[int, list[Step]]
) -> None:
    """Relay and projection consumer in-process on tansu; segments follow the store's log."""
    with fresh_databases(postgres, 1) as (url,), ExitStack() as stack:
        run = History(Databases(url, url, url), 50, stack)
        run.run([step for step in history[1] if step[0] not in LIVE_STEPS])
        topics = kafka.Topics(f"purity{uuid4().hex[:6]}.")
        kafka.ensure_topics(broker.bootstrap, topics.all(), partitions=PARTITIONS)
        producer = kafka.producer(broker.bootstrap)
        stack.callback(producer.close, 10)
        relay = Relay(run.feed, producer, topics.events, run.read_stores[1])
        relay.catch_up()
        group = f"purity-{uuid4().hex[:6]}"
        from_topic = [p for p in all_projectors() if not p.log_order]
        consumer = ProjectionConsumer(
            kafka.consumer(broker.bootstrap, group),
            producer,
            topic=topics.events,
            group=group,
            read_store=run.read_stores[0],
            projectors=from_topic,
            personal=run.store.personal,
        )
        consumer.subscribe()
        stack.callback(consumer.consumer.close)
        published = len(run.feed.read_sealed(0, 1_000_000))
        deadline = time.monotonic() + 120
        while consumer.applied < published and time.monotonic() < deadline:
            consumer.poll_once(timeout_ms=500)
        assert consumer.applied >= published
        log_ordered: list[Projector] = [p for p in all_projectors() if p.log_order]
        EmbeddedRunner(run.feed, run.read_stores[0], log_ordered).catch_up()
        results = rebuild_all(run.feed, run.read_stores[0], all_projectors(), verify_only=True)
        assert {r.name: r.differences for r in results if r.differences} == {}
