"""Audit history and analytics read models: one contract, run on SQLite and on PostgreSQL.

The analytics fixture drives real commands over two simulated years of business time (the
command service's clock is set week by week; purchases carry their own ``occurred_at``), and
keeps its own plain-Python account of every customer alongside. Expected lifecycle counts,
churn rates, NPS/CSAT and RFM values are computed from that account only — never with the
code under test.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import pairwise
from typing import Any
from uuid import UUID

import pytest

import commands.service
from commands import messages as m
from commands.service import CommandService, Context
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild, rebuild_all
from consumers.store_feed import StoreFeed
from infra.readstore import ReadStore, Tx, open_read_store
from infra.store import EventStore
from projections import analytics, audit_history, rfm_model
from projections.framework import Binding, Projector, ensure_schema, project
from tests.integration.workers import worker_connect

CTX = Context(actor="fixture")
T0 = datetime(2023, 1, 2, tzinfo=UTC)  # a Monday; the fixture runs 104 weeks from here
WEEKS, CUSTOMERS = 104, 180
LIVE = ("active", "churned")
STAGE_KINDS = ("registered", "stage_changed", "churned", "reactivated")
# The documented R (rows, 5 first) x F (columns 1-5) grid, written out independently.
GRID = {
    5: ["new", "potential_loyalist", "potential_loyalist", "champions", "champions"],
    4: ["new", "potential_loyalist", "potential_loyalist", "champions", "champions"],
    3: ["needs_attention", "needs_attention", "needs_attention", "loyal", "loyal"],
    2: ["hibernating", "hibernating", "at_risk", "at_risk", "at_risk"],
    1: ["lost", "hibernating", "at_risk", "at_risk", "at_risk"],
}


def projectors() -> list[Projector]:
    return [audit_history.AuditHistoryProjector(), analytics.AnalyticsProjector()]


class Clock:
    """Stands in for ``datetime`` in :mod:`commands.service`: commands happen at ``moment``."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self, tz: tzinfo | None = None) -> datetime:
        return self.moment


@dataclass
class Person:
    """The fixture's own account of one customer."""

    index: int
    stage: str
    registered_week: int
    id: UUID | None = None
    status: str = "active"
    status_before_merge: str = "active"
    # (kind, at, stage before, stage after, status after) in version order
    events: list[tuple[str, datetime, str | None, str, str]] = field(default_factory=list)
    orders: dict[str, tuple[datetime, Decimal, str]] = field(default_factory=dict)
    absorbed: dict[str, tuple[datetime, Decimal, str]] = field(default_factory=dict)
    nps: int | None = None
    csat: int | None = None

    def move(self, kind: str, at: datetime, stage: str | None = None, status: str = "") -> None:
        before = None if kind == "registered" else self.stage
        self.stage, self.status = stage or self.stage, status or self.status
        self.events.append((kind, at, before, self.stage, self.status))

    @property
    def cid(self) -> UUID:
        assert self.id is not None
        return self.id


def activity(rng: random.Random, p: Person, week: int, tick: datetime) -> list[m.Command]:
    """One customer's week: purchases first (their own times), then moves at ``tick``."""
    commands: list[m.Command] = []
    if rng.random() < 0.14:
        first = T0 + timedelta(weeks=week, minutes=rng.randrange(6 * 24 * 60 + 22 * 60))
        for n in range(2 if rng.random() < 0.15 else 1):  # sometimes twice the same day
            when = first + timedelta(seconds=n)
            order, amount = f"o{p.index}-{week}-{n}", Decimal(rng.randint(100, 40_000)) / 100
            currency = "USD" if rng.random() < 0.05 else "EUR"
            commands.append(
                m.RecordPurchase(
                    customer_id=p.cid,
                    order_id=order,
                    amount=str(amount),
                    currency=currency,
                    occurred_at=when,
                )
            )
            p.orders[order] = (when, amount, currency)
            if p.status == "churned":  # a purchase reactivates (two events)
                p.move("reactivated", when, "active", "active")
            elif p.stage == "prospect":  # a first purchase makes a prospect new
                p.move("stage_changed", when, "new")
    if p.status == "active" and rng.random() < 0.03:
        stage = rng.choice([s for s in ("new", "active", "loyal", "at_risk") if s != p.stage])
        commands.append(m.ChangeLifecycleStage(customer_id=p.cid, stage=stage))
        p.move("stage_changed", tick, stage)
    if rng.random() < 0.04:
        nps = None if rng.random() < 0.2 else rng.randint(0, 10)
        csat = rng.randint(1, 5) if nps is None or rng.random() < 0.8 else None
        commands.append(m.RecordFeedback(customer_id=p.cid, nps=nps, csat=csat))
        p.nps, p.csat = p.nps if nps is None else nps, p.csat if csat is None else csat
    if p.status == "active" and rng.random() < 0.02:
        commands.append(m.ChurnCustomer(customer_id=p.cid))
        p.move("churned", tick, "churned", "churned")
    elif p.status == "churned" and rng.random() < 0.1:
        commands.append(m.ReactivateCustomer(customer_id=p.cid))
        p.move("reactivated", tick, "active", "active")
    return commands


def specials(
    rng: random.Random,
    people: list[Person],
    week: int,
    tick: datetime,
    pairs: list[tuple[Person, Person]],
) -> list[m.Command]:
    """Merges in week 96, three unmerges in week 98, erasures in week 100."""
    commands: list[m.Command] = []
    if week == 96:
        live = [p for p in people if p.id is not None and p.status in LIVE]
        chosen = rng.sample(live, 16)
        pairs.extend(zip(chosen[::2], chosen[1::2], strict=True))
        for survivor, duplicate in pairs:
            commands.append(m.MergeCustomers(customer_id=survivor.cid, duplicate_id=duplicate.cid))
            survivor.absorbed = dict(duplicate.orders)
            survivor.orders.update(duplicate.orders)
            duplicate.status_before_merge = duplicate.status
            duplicate.move("merged", tick, status="merged")
    elif week == 98:
        for survivor, duplicate in pairs[:3]:
            commands.append(
                m.UnmergeCustomers(customer_id=survivor.cid, duplicate_id=duplicate.cid)
            )
            for order in survivor.absorbed:
                del survivor.orders[order]
            duplicate.move("unmerged", tick, status=duplicate.status_before_merge)
    elif week == 100:
        merged = {p.index for pair in pairs for p in pair}
        live = [p for p in people if p.status in LIVE and p.index not in merged]
        for p in rng.sample(live, 3):
            commands.append(m.EraseCustomer(customer_id=p.cid))
            p.move("erased", tick, status="erased")
        survivor, duplicate = pairs[3]  # erasing a survivor erases the duplicate merged into it
        commands.append(m.EraseCustomer(customer_id=survivor.cid))
        for p in (survivor, duplicate):
            p.move("erased", tick, status="erased")
    return commands


def build(service: CommandService, clock: Clock) -> list[Person]:
    """Two years of weekly batches; the fixture's account is updated as commands are made."""
    rng = random.Random(20240601)
    people = [
        Person(i, rng.choice(["prospect", "prospect", "new", "active"]), rng.randrange(78))
        for i in range(CUSTOMERS)
    ]
    pairs: list[tuple[Person, Person]] = []
    for week in range(WEEKS):
        clock.moment = tick = T0 + timedelta(weeks=week + 1, hours=-1)
        joining = [p for p in people if p.registered_week == week]
        batch: list[m.Command] = [
            m.RegisterCustomer(name=f"Customer {p.index}", lifecycle_stage=p.stage) for p in joining
        ]
        for p in people:
            if p.registered_week < week and p.status in LIVE:
                batch += activity(rng, p, week, tick)
        batch += specials(rng, people, week, tick, pairs)
        outcomes = service.execute_batch(batch, CTX)
        assert [o.problem for o in outcomes if o.problem] == []
        for p, outcome in zip(joining, outcomes, strict=False):
            p.id = outcome.customer_id
            p.move("registered", tick, p.stage, "active")
    return people


# ------------------------------------------------------------ independent expectations


def status_at(p: Person, moment: datetime) -> str | None:
    """Status after the customer's events (in version order) that occurred before ``moment``."""
    if p.events[0][1] >= moment:
        return None  # not registered yet
    return [status for _, at, _, _, status in p.events if at < moment][-1]


def expected_churn(people: list[Person], months: int) -> list[tuple[int, int]]:
    """(active at start, churned) for each period of ``months`` months in 2023-2024."""
    starts = [datetime(2023 + k // 12, k % 12 + 1, 1, tzinfo=UTC) for k in range(0, 25, months)]
    result = []
    for start, end in pairwise(starts):
        cohort = [p for p in people if status_at(p, start) == "active"]
        churned = [
            p
            for p in cohort
            if any(kind == "churned" and start <= at < end for kind, at, *_ in p.events)
        ]
        result.append((len(cohort), len(churned)))
    return result


def quintile(values: dict[str, Any]) -> dict[str, int]:
    """Scores 1-5 from the strict percentile rank: 1 + floor(5 x (customers with a strictly
    lower value) / n), so equal values score alike."""
    return {
        c: 1 + 5 * sum(other < v for other in values.values()) // len(values)
        for c, v in values.items()
    }


def expected_rfm(people: list[Person], end: date) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for p in people:
        days: dict[date, Decimal] = {}
        for when, amount, currency in p.orders.values():
            if currency == "EUR" and when.date() <= end:
                days[when.date()] = days.get(when.date(), Decimal(0)) + amount
        if p.status not in LIVE or not days:
            continue
        ordered = sorted(days)
        repeat = [days[d] for d in ordered[1:]]
        mean = sum(repeat, Decimal(0)) / len(repeat) if repeat else Decimal(0)
        result[str(p.id)] = {
            "frequency": len(repeat),
            "recency": (ordered[-1] - ordered[0]).days,
            "T": (end - ordered[0]).days,
            "monetary": str(mean.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)),
        }
    r = quintile({c: s["recency"] - s["T"] for c, s in result.items()})
    f = quintile({c: s["frequency"] for c, s in result.items()})
    money = quintile({c: Decimal(s["monetary"]) for c, s in result.items()})
    for c, s in result.items():
        s.update(r=r[c], f=f[c], m=money[c], group=GRID[r[c]][f[c] - 1])
    return result


def everyone_scored(tx: Tx, day: date) -> dict[str, dict[str, Any]]:
    """Every live customer's RFM in EUR as of ``day``, as the paged API reads it."""
    population = rfm_model.populations(tx, day)["EUR"]
    return {row.pop("customer_id"): row for row in rfm_model.page(tx, population, day)}


def tables(read_store: ReadStore) -> dict[str, list[tuple[Any, ...]]]:
    with read_store.transaction() as tx:
        return {
            t: sorted(tx.fetchall(f"SELECT * FROM {t}"), key=repr)
            for p in projectors()
            for t in p.all_tables()
        }


# ------------------------------------------------------------------------ the contract


class TestAuditAnalytics:
    @pytest.fixture
    def world(
        self, database_url: str
    ) -> Iterator[tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]]:
        store = EventStore(database_url)
        read_store = open_read_store(database_url)
        ensure_schema(read_store, projectors())
        runner = EmbeddedRunner(StoreFeed(store), read_store, projectors(), batch_size=500)
        yield store, read_store, CommandService(store, default_region="DE", index_key="k"), runner
        read_store.close()
        store.close()

    @pytest.fixture
    def dataset(
        self,
        world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner],
        monkeypatch: pytest.MonkeyPatch,
    ) -> tuple[EventStore, ReadStore, list[Person]]:
        store, read_store, service, runner = world
        clock = Clock(T0)
        monkeypatch.setattr(commands.service, "datetime", clock)
        people = build(service, clock)
        monkeypatch.undo()
        runner.catch_up()
        assert len(people) >= 150 and sum(len(p.orders) - len(p.absorbed) for p in people) >= 1000
        return store, read_store, people

    def test_analytics_match_independent_expectations(
        self, dataset: tuple[EventStore, ReadStore, list[Person]]
    ) -> None:
        _, read_store, people = dataset
        live = [p for p in people if p.status in LIVE]
        with read_store.transaction() as tx:
            stages = analytics.lifecycle(tx)
            periods: list[tuple[int, analytics.Period]] = [
                (1, "month"),
                (3, "quarter"),
                (12, "year"),
            ]
            churn = {
                months: analytics.churn(tx, period, date(2023, 1, 1), date(2024, 12, 31))
                for months, period in periods
            }
            satisfaction = analytics.satisfaction(tx)
            rfm_end = everyone_scored(tx, date(2024, 12, 30))
            rfm_mid = everyone_scored(tx, date(2024, 6, 15))

        assert stages["stages"] == dict(Counter(p.stage for p in live))
        assert stages["statuses"] == dict(Counter(p.status for p in people))
        assert {(t["month"], t["from"], t["to"]): t["count"] for t in stages["transitions"]} == (
            Counter(
                (at.strftime("%Y-%m"), before, after)
                for p in people
                for kind, at, before, after, _ in p.events
                if kind in STAGE_KINDS
            )
        )

        for months, report in churn.items():
            want = expected_churn(people, months)
            assert [(r["active_at_start"], r["churned"]) for r in report] == want
            assert [r["rate"] for r in report] == [round(c / a, 6) if a else None for a, c in want]
        assert sum(r["churned"] for r in churn[1]) > 20  # the fixture does churn

        answering = [p for p in people if p.status != "merged"]  # erased answers stay
        nps = [p.nps for p in answering if p.nps is not None]
        csat = [p.csat for p in answering if p.csat is not None]
        promoters, detractors = sum(s >= 9 for s in nps), sum(s <= 6 for s in nps)
        assert satisfaction["nps"] == {
            "score": round(100 * (promoters - detractors) / len(nps), 4),
            "responses": len(nps),
        }
        assert satisfaction["csat"] == {
            "score": round(100 * sum(s >= 4 for s in csat) / len(csat), 4),
            "responses": len(csat),
        }
        assert satisfaction["counts"]["nps"]["passives"] == len(nps) - promoters - detractors

        assert rfm_end == expected_rfm(people, date(2024, 12, 30))
        assert rfm_mid == expected_rfm(people, date(2024, 6, 15))
        assert len(rfm_end) > 150 and len({r["group"] for r in rfm_end.values()}) >= 6

    def test_redelivery_changes_nothing_and_rebuild_agrees(
        self, dataset: tuple[EventStore, ReadStore, list[Person]]
    ) -> None:
        store, read_store, _ = dataset
        before = tables(read_store)
        envelopes = StoreFeed(store).read(0, 100_000)
        with read_store.transaction() as tx:
            bindings = [Binding.live(p) for p in projectors()]
            project(tx, bindings, envelopes, by_position=False)  # a Kafka redelivery
            for binding in bindings:  # and an older half straight into the projectors
                handles = binding.projector.handles
                older = envelopes[: len(envelopes) // 2]
                again = [e for e in older if handles is None or e.type in handles]
                binding.projector.apply(tx.with_tables(binding.tables), again)
        assert tables(read_store) == before
        for projector in projectors():
            result = rebuild(StoreFeed(store), read_store, projector, verify_only=True)
            assert result.differences == [] and result.events == len(envelopes)

    def test_a_rebuild_in_worker_processes_equals_the_live_tables(
        self, dataset: tuple[EventStore, ReadStore, list[Person]], database_url: str
    ) -> None:
        store, read_store, _ = dataset
        before, events = tables(read_store), len(StoreFeed(store).read(0, 100_000))
        results = rebuild_all(  # PostgreSQL: two processes, each a range of customers
            StoreFeed(store),
            read_store,
            projectors(),
            batch_size=40,
            workers=2,
            connect=worker_connect(database_url),
        )
        assert [r.events for r in results] == [events, events]
        assert tables(read_store) == before

    def test_audit_diffs_for_update_merge_unmerge_and_erasure(
        self, world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]
    ) -> None:
        _, read_store, service, runner = world
        clerk, admin = Context(actor="clerk"), Context(actor="admin", correlation_id="case-9")
        ann = service.execute(
            m.RegisterCustomer(name="Ann", email="ann@example.com", attributes={"city": "Oslo"}),
            clerk,
        ).customer_id
        bob = service.execute(m.RegisterCustomer(name="Bob", phone="+4930901820"), clerk)
        assert ann is not None and bob.customer_id is not None
        bob_id = bob.customer_id
        outcomes = service.execute_batch(
            [
                m.TagCustomer(customer_id=bob_id, tag="vip"),
                m.RecordPurchase(
                    customer_id=bob_id, order_id="b-1", amount="30.00", currency="EUR"
                ),
                m.UpdateProfile(
                    customer_id=ann,
                    changes={"name": "Ann B", "attributes": {"city": "Rome", "size": "M"}},
                ),
                m.SetConsent(customer_id=ann, purpose="email_marketing", granted=True),
                m.SetConsent(customer_id=ann, purpose="email_marketing", granted=False),
                m.ChurnCustomer(customer_id=ann),
            ],
            clerk,
        )
        assert [o.problem for o in outcomes if o.problem] == []
        service.execute(m.MergeCustomers(customer_id=ann, duplicate_id=bob_id), admin)
        service.execute(m.UnmergeCustomers(customer_id=ann, duplicate_id=bob_id), admin)
        runner.catch_up()
        with read_store.transaction() as tx:
            rows, _ = audit_history.history(tx, ann)
            bobs, _ = audit_history.history(tx, bob_id)
        diffs = {r["type"]: r["diff"] for r in rows[1:]}
        assert rows[0]["type"] == "customer.registered" and rows[0]["diff"]["name"] == [None, "Ann"]
        assert diffs["customer.profile_updated"] == {
            "name": ["Ann", "Ann B"],
            "attributes.city": ["Oslo", "Rome"],
            "attributes.size": [None, "M"],
        }
        assert [r["diff"] for r in rows if r["type"].startswith("customer.consent")] == [
            {"consents.email_marketing": [None, True]},
            {"consents.email_marketing": [True, False]},
        ]
        assert diffs["customer.churned"] == {
            "lifecycle_stage": ["prospect", "churned"],
            "status": ["active", "churned"],
        }
        absorbed, given_back = diffs["customer.duplicate_absorbed"], diffs["customer.unmerged"]
        bob_diffs = {r["type"]: r for r in bobs}
        bought = bob_diffs["customer.purchase_recorded"]["diff"]["purchases.first_at"][1]
        assert absorbed == {
            "phone": [None, "+4930901820"],
            "tags": [[], ["vip"]],
            "purchases.count": [0, 1],
            "purchases.total": [{}, {"EUR": "30.00"}],
            "purchases.first_at": [None, bought],
            "purchases.last_at": [None, bought],
        }
        assert given_back == {k: [after, before] for k, (before, after) in absorbed.items()}
        assert [(r["type"], r["diff"], r["actor"], r["correlation_id"]) for r in bobs[-2:]] == [
            (
                "customer.merged_into",
                {"status": ["active", "merged"], "merged_into": [None, str(ann)]},
                "admin",
                "case-9",
            ),
            (
                "customer.unmerged",
                {"status": ["merged", "active"], "merged_into": [str(ann), None]},
                "admin",
                "case-9",
            ),
        ]

        service.execute(m.EraseCustomer(customer_id=ann), admin)
        runner.catch_up()
        with read_store.transaction() as tx:
            erased, _ = audit_history.history(tx, ann)
            bobs_after, _ = audit_history.history(tx, bob_id)
        assert erased[-1]["type"] == "customer.erased" and erased[-1]["diff"] == {
            "status": ["churned", "erased"]
        }
        assert erased[1]["diff"] == {}  # name and attributes only: nothing left to show
        assert erased[0]["data"]["attributes"] == {} and erased[0]["data"]["email"] is None
        for secret in ("ann@example.com", "Ann", "Rome", "Oslo", "+4930901820"):
            assert secret not in repr(erased)
        assert bobs_after == bobs  # the other customer's history is untouched

    def test_erased_histories_equal_a_rebuild_on_every_erasure_path(
        self, world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]
    ) -> None:
        """Issue 13 item 6: live blanking kept keys a rebuild leaves out ("email": null)."""
        store, read_store, service, runner = world
        clerk = Context(actor="clerk")

        def register(name: str, email: str, **fields: Any) -> UUID:
            command = m.RegisterCustomer(name=name, email=email, **fields)
            customer = service.execute(command, clerk).customer_id
            assert customer is not None
            return customer

        def everything_personal(customer: UUID, order: str) -> list[m.Command]:
            return [
                m.UpdateProfile(customer_id=customer, changes={"name": "New", "phone": None}),
                m.UpdateProfile(customer_id=customer, changes={"attributes": {"size": "M"}}),
                m.RecordContact(
                    customer_id=customer, channel="email", direction="inbound", subject="Hi"
                ),
                m.RecordContact(customer_id=customer, channel="sms", direction="outbound"),
                m.RecordFeedback(customer_id=customer, nps=3, comment="slow"),
                m.RecordPurchase(
                    customer_id=customer,
                    order_id=order,
                    amount="9.50",
                    currency="EUR",
                    items=[{"sku": "tea", "name": "Green tea"}],
                ),
            ]

        fed_each_time = register("Ann", "ann@example.com", attributes={"city": "Oslo"})
        for command in everything_personal(fed_each_time, "a-1"):
            service.execute(command, clerk)
            runner.catch_up()
        in_one_batch = register("Bea", "bea@example.com", phone="+4930901820")
        survivor = register("Cy", "cy@example.com")
        duplicate = register("Dee", "dee@example.com", phone="+4930901821")
        runner.catch_up()
        holder = register("Eve", "eve@example.com")
        unmerged = register("Fay", "fay@example.com", phone="+4930901822")
        runner.catch_up()
        service.execute_batch(everything_personal(in_one_batch, "b-1"), clerk)
        service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), clerk)
        service.execute(m.MergeCustomers(customer_id=holder, duplicate_id=unmerged), clerk)
        service.execute(m.UnmergeCustomers(customer_id=holder, duplicate_id=unmerged), clerk)
        runner.catch_up()
        # erasing the survivor erases the duplicate merged into it; the unmerged duplicate's
        # erasure reaches the copies its merge left in the holder's history
        for customer in (fed_each_time, survivor, unmerged):
            service.execute(m.EraseCustomer(customer_id=customer), clerk)
            runner.catch_up()
        service.execute(m.EraseCustomer(customer_id=in_one_batch), clerk)  # with its events
        runner.catch_up()

        for projector in projectors():
            result = rebuild(StoreFeed(store), read_store, projector, verify_only=True)
            assert result.differences == [], projector.name
        with read_store.transaction() as tx:
            history, _ = audit_history.history(tx, fed_each_time)
        assert history[0]["data"]["attributes"] == {} and "email" not in history[0]["diff"]
        assert history[-1]["diff"] == {"status": ["active", "erased"]}
        purchase = next(r for r in history if r["type"] == "customer.purchase_recorded")
        assert purchase["data"]["items"] == [{"sku": "tea", "name": "Green tea"}]  # not personal
        with read_store.transaction() as tx:
            kept, _ = audit_history.history(tx, holder)
        assert "eve@example.com" in repr(kept) and "fay@example.com" not in repr(kept)
        assert "+4930901822" not in repr(kept)

    def test_audit_queries_by_actor_type_and_time_with_paging(
        self, world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]
    ) -> None:
        _, read_store, service, runner = world
        clerk, admin = Context(actor="clerk"), Context(actor="admin")
        ids = []
        for i in range(5):
            registered = service.execute(m.RegisterCustomer(name=f"P{i}"), clerk).customer_id
            assert registered is not None
            ids.append(registered)
        middle = datetime.now(UTC)
        for customer in ids:
            service.execute(m.TagCustomer(customer_id=customer, tag="x"), admin)
        service.execute(m.UpdateProfile(customer_id=ids[0], changes={"name": "Q0"}), admin)
        runner.catch_up()
        with read_store.transaction() as tx:
            everything, none_left = audit_history.search(tx, limit=1000)
            pages, cursor = [], None
            while True:
                page, cursor = audit_history.search(tx, actor="admin", cursor=cursor, limit=2)
                pages.append(page)
                if cursor is None:
                    break
            tagged, _ = audit_history.search(tx, type="customer.tagged", actor="admin")
            before, _ = audit_history.search(tx, end=middle)
            after, _ = audit_history.search(tx, start=middle)
            first, more = audit_history.history(tx, ids[0], limit=2)
            rest, _ = audit_history.history(tx, ids[0], cursor=more, limit=2)
            with pytest.raises(ValueError, match="cursor"):
                audit_history.search(tx, cursor="not-a-cursor!")
        assert none_left is None and len(everything) == 11
        assert [p["position"] for p in everything] == sorted(p["position"] for p in everything)
        assert [len(p) for p in pages] == [2, 2, 2] and all(
            r["actor"] == "admin" for page in pages for r in page
        )
        assert [r["customer_id"] for r in tagged] == [str(c) for c in ids]
        assert {r["type"] for r in before} == {"customer.registered"} and len(before) == 5
        assert after == [r for page in pages for r in page]
        assert [r["version"] for r in first + rest] == [1, 2, 3] and more is not None
        assert first[0]["recorded_at"] < audit_history.utc(middle) <= after[0]["recorded_at"]
