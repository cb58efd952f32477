"""Audit history and analytics read models: one contract, run on SQLite and on PostgreSQL.

The analytics fixture drives real commands over two simulated years of business time (the
command service's clock is set week by week; purchases carry their own ``occurred_at``), and
keeps its own plain-Python account of every customer alongside. Expected lifecycle counts,
churn rates, NPS/CSAT and RFM values are computed from that account only — never with the
code under test.

The hand-made audit histories (diffs, erasure, queries) are in ``test_audit_history``.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import pairwise
from typing import Any
from uuid import UUID

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild, rebuild_all
from consumers.store_feed import StoreFeed
from infra.read_tx import Tx
from infra.readstore import ReadStore
from infra.store import EventStore
from projections import analytics, rfm_model
from projections.framework import Binding, project
from tests.integration.audit_analytics_support import AuditAnalyticsContract, projectors, tables
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


class Clock:
    """The command service's clock: commands happen at ``moment``."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
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


# ------------------------------------------------------------------------ the contract


class TestAuditAnalytics(AuditAnalyticsContract):
    @pytest.fixture
    def dataset(
        self,
        world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner],
    ) -> tuple[EventStore, ReadStore, list[Person]]:
        store, read_store, _, runner = world
        clock = Clock(T0)
        service = CommandService(store, default_region="DE", index_key="k", clock=clock.now)
        people = build(service, clock)
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
