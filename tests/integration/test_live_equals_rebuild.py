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

Merges move their data in parts of one purchase (so a merge of a big customer is several
``duplicate_absorbed`` events), a merge carries the duplicate's consent withdrawals over, and
erasing a survivor erases its duplicates (a recent merge may be undone and its duplicate
erased: the erasure reaches the copies left on the survivor). Pipeline faults come too: a read model may refuse a
customer for a while (a projector bug: the customer is parked for that read model, its later
events wait), a message may be dead-lettered on the way (its customer is parked in the read
models fed from the topic), and re-drives run before and after the fix.

Then, once every fault is fixed and every parked customer re-driven (none may stay parked),
``rebuild_all(verify_only=True)`` — what ``clientele projections verify`` runs — must find
no difference, row for row, in any read model, on SQLite and on a real PostgreSQL. One
history also goes through a real broker (relay and projection consumer, in-process).

CI runs 200 examples on SQLite and 25 on PostgreSQL (about a minute). A larger run multiplies
both (``--hypothesis-show-statistics`` tells how often each of these came up): ``CLIENTELE_PURITY_SCALE=20 .venv/bin/pytest tests/integration/test_live_equals_rebuild.py``
(README, "Tests").
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch
from uuid import UUID, uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, event, given, seed, settings
from hypothesis import strategies as st

import domain.merging
from commands import messages as m
from commands.segments import SegmentService
from commands.service import CommandService, Context
from consumers.embedded import EmbeddedRunner
from consumers.kafka_projection import ProjectionConsumer
from consumers.rebuild import rebuild, rebuild_all
from consumers.redrive import redrive
from consumers.relay import Relay
from consumers.store_feed import StoreFeed
from infra import kafka
from infra.envelope import Envelope
from infra.local_services import KafkaBroker, PostgresCluster
from infra.store import EventStore
from projections.framework import Binding, Projector, ensure_schema, park, project
from projections.parking import Parked
from projections.readstore import ReadStore, Tx, open_read_store
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
LIVE_STEPS = {"feed", "relay", "deliver", "crash", "lose", "rebuild", "refuse", "redrive"}
PARTITIONS = 3
PURCHASES_PER_PART = 1  # a duplicate with purchases moves them in several parts

Step = tuple[Any, ...]
person = st.integers(0, 5)
days = st.integers(0, 45)
REGISTER = st.tuples(
    st.just("register"), st.integers(0, 3), st.integers(0, 3), st.booleans(), st.integers(0, 3)
)
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
    # merges (each strategy object counts once: three of them), and undoing a recent merge,
    # then perhaps erasing the duplicate (its erasure reaches the copies left on the survivor)
    *[st.tuples(st.just("merge"), person, person) for _ in range(3)],
    st.tuples(st.just("unmerge"), person, person),
    st.tuples(st.just("undo"), st.integers(0, 2), st.booleans()),
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
    st.tuples(st.just("refuse"), person, st.integers(0, 3)),
    st.tuples(st.just("lose"), st.integers(0, PARTITIONS - 1)),
    st.tuples(st.just("redrive"), st.booleans()),
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


class Refusing:
    """Projectors that refuse the customers in ``refused`` (by projection name) — a projector
    bug until :meth:`fix` — built from the real ones, so a rebuild compares alike."""

    def __init__(self) -> None:
        self.refused: dict[str, set[str]] = {}
        self.projectors = [self._refusing(p) for p in all_projectors()]

    def _refusing(self, projector: Projector) -> Projector:
        base, refused = type(projector), self.refused.setdefault(projector.name, set())

        def apply(this: Projector, tx: Tx, envelopes: Sequence[Envelope]) -> None:
            if refused & {e.customer_key for e in envelopes}:
                raise ValueError(f"{this.name} refuses one of these customers")
            base.apply(this, tx, envelopes)

        refusing: Projector = type(f"Refusing{base.__name__}", (base,), {"apply": apply})()
        return refusing

    def refuse(self, projection: int, customer: UUID) -> None:
        self.refused[self.projectors[projection].name].add(str(customer))

    def fix(self) -> None:
        for customers in self.refused.values():
            customers.clear()


class KafkaLike:
    """``customer.events`` as Kafka hands it over to ``clientele consume``: a partition per
    customer key, in order; partitions consumed in any interleaving; after a crash, consumed
    messages come again. Segments follow the store's log, as ``consume`` runs them."""

    def __init__(
        self,
        feed: StoreFeed,
        read_store: ReadStore,
        projectors: Sequence[Projector],
        batch_size: int,
    ) -> None:
        self.feed, self.read_store = feed, read_store
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

    def lose(self, partition: int) -> None:
        """The partition's next message is dead-lettered: the consumer parks its customer in
        every projection it feeds (as ``ProjectionConsumer`` does) and moves on."""
        start = self.offsets[partition]
        for envelope in self.partitions[partition][start : start + 1]:
            held = Parked(envelope.customer_key, envelope.version, envelope.position, "lost")
            with self.read_store.transaction() as tx:
                for binding in self.bindings:
                    park(tx.with_tables(binding.tables), binding.projector, [held])
            self.offsets[partition] = start + 1

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
        self.faults = Refusing()
        projectors = self.faults.projectors
        self.runner = EmbeddedRunner(
            self.feed, self.read_stores[0], projectors, batch_size=batch_size
        )
        self.kafka = KafkaLike(self.feed, self.read_stores[1], projectors, batch_size)
        self.ids: list[UUID] = []
        self.merges: list[tuple[UUID, UUID]] = []
        self.now = datetime.now(UTC)

    def who(self, index: int) -> UUID:
        return self.ids[index % len(self.ids)] if self.ids else uuid4()

    def command(self, step: Step, number: int) -> m.Command | None:
        kind, *args = step
        if kind == "register":
            name, email, oslo, _ = args
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
                projector = self.faults.projectors[step[1]]
                rebuild(self.feed, self.read_stores[0], projector, batch_size=3)
            elif kind == "refuse":
                self.faults.refuse(step[2], self.who(step[1]))
            elif kind == "lose":
                self.kafka.lose(step[1])
            elif kind == "redrive":
                if step[1]:
                    self.faults.fix()
                self.redrive()
            elif kind == "undo":
                self.undo(step[1], erase=step[2])
            else:
                self.execute(self.command(step, number))
                if kind == "register" and self.ids:  # with a few purchases: merged in parts
                    self.execute_all(self.purchases(self.ids[-1], step[4], number))

    def purchases(self, customer: UUID, count: int, number: int) -> list[m.Command]:
        return [
            m.RecordPurchase(
                customer_id=customer,
                order_id=f"o{number}-{n}",
                amount="20.50",
                currency="EUR",
                occurred_at=self.now - timedelta(days=n),
            )
            for n in range(count)
        ]

    def undo(self, back: int, *, erase: bool) -> None:
        """Unmerge the ``back``-th latest merge; then perhaps erase the duplicate."""
        if not self.merges:
            return
        survivor, duplicate = self.merges[-1 - back % len(self.merges)]
        self.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate))
        if erase:
            self.execute(m.EraseCustomer(customer_id=duplicate))

    def execute(self, command: m.Command | None) -> None:
        if command is not None:
            self.execute_all([command])

    def execute_all(self, commands: list[m.Command]) -> None:
        outcomes = self.service.execute_batch(commands, CTX)
        for command, outcome in zip(commands, outcomes, strict=True):
            if outcome.status != "accepted":
                continue
            if outcome.customer_id is None:
                continue
            if isinstance(command, m.RegisterCustomer):
                self.ids.append(outcome.customer_id)
            if isinstance(command, m.MergeCustomers):
                self.merges.append((outcome.customer_id, command.duplicate_id))

    def redrive(self) -> None:
        """What ``clientele projections redrive`` does, for both live feeds."""
        for read_store in self.read_stores:
            redrive(self.feed, read_store, self.faults.projectors, due_only=False)

    def parked(self) -> int:
        count = 0
        for read_store in self.read_stores:
            with read_store.transaction() as tx:
                for projector in self.faults.projectors:
                    scoped = tx.with_tables(Binding.live(projector).tables)
                    count += len(projector.parking.listing(scoped))
        return count

    def tally(self) -> None:
        """What the history exercised (``--hypothesis-show-statistics``)."""
        envelopes = self.feed.read(0, 1_000_000)
        last: dict[str, str] = {}  # each customer's latest event type
        for e in envelopes:
            if e.type == "customer.duplicate_absorbed" and e.data["parts"] > 1:
                event("a merge in parts")
            if e.type == "customer.consent_withdrawn" and str(e.data["source"]).startswith(
                "merge:"
            ):
                event("a merge carried a withdrawal over")
            if e.type == "customer.erased" and e.data["copies_at"]:
                event("an erasure reached copies on another customer")
            if e.type == "customer.erased" and last.get(e.customer_key) == "customer.merged_into":
                event("an erasure cascaded to a merged duplicate")
            last[e.customer_key] = e.type
        parked = self.parked()
        event(f"customers parked before the fix: {parked if parked < 3 else '3 or more'}")

    def verify(self) -> None:
        self.runner.catch_up()
        self.kafka.drain()
        self.tally()
        self.faults.fix()
        self.redrive()
        self.runner.catch_up()
        self.kafka.drain()
        for read_store, feed in zip(self.read_stores, ("embedded", "full"), strict=True):
            with read_store.transaction() as tx:
                for projector in self.faults.projectors:
                    scoped = tx.with_tables(Binding.live(projector).tables)
                    assert projector.parking.listing(scoped) == [], (feed, projector.name)
            results = rebuild_all(self.feed, read_store, all_projectors(), verify_only=True)
            assert {r.name: r.differences for r in results if r.differences} == {}, feed


def check(databases: Databases, history: tuple[int, list[Step]]) -> None:
    batch_size, steps = history
    with ExitStack() as stack:
        stack.callback(databases.cleanup)
        stack.enter_context(patch.object(domain.merging, "PURCHASES_PER_PART", PURCHASES_PER_PART))
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
            feed=run.feed,
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
