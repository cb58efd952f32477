"""The loyalty policy's process manager through the real command service, on SQLite and
PostgreSQL: points earned per purchase (once per order, however often it runs), taken back on
a refund, expired lot by lot (FIFO) by the sweep at business time T; tiers by rolling spend
with a grace period before a downgrade; every automatic event naming its rule and policy
version; two concurrent sweeps that record nothing twice; a policy change that applies from its
effective time; a simulation that changes nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from commands import messages as m
from commands.policies import PolicyService
from commands.service import CommandService, Context
from consumers.loyalty_policy import LoyaltyRunner
from domain.errors import InvalidTransition
from domain.events import TierChanged
from domain.points import Ledger
from infra.readstore import open_read_store
from infra.store import EventStore

DAY = timedelta(days=1)
T0 = datetime.now(UTC).replace(microsecond=0) - 800 * DAY
CLERK = Context(actor="clerk")
ACTOR = "clientele:policy-loyalty"
POLICY = {
    "earn": {"EUR": "1.5", "USD": "1"},
    "rounding": "half_up",
    "expiry_days": 90,
    "tiers": {"EUR": {"silver": "100", "gold": "300", "platinum": "1000"}},
    "downgrade_grace_days": 30,
}


@pytest.fixture
def policies(store: EventStore) -> PolicyService:
    policies = PolicyService(store)
    policies.define("loyalty", POLICY, Context(actor="ops"), effective_at=T0)
    return policies


@pytest.fixture
def runner(
    store: EventStore, service: CommandService, policies: PolicyService, database_url: str
) -> Iterator[LoyaltyRunner]:
    checkpoints = open_read_store(database_url, pool_size=1)
    yield LoyaltyRunner(store, service, policies, checkpoints, batch_size=3)
    checkpoints.close()


def register(service: CommandService, name: str) -> UUID:
    outcome = service.execute(m.RegisterCustomer(name=name, occurred_at=T0), CLERK)
    assert outcome.customer_id is not None
    return outcome.customer_id


def buy(service: CommandService, customer: UUID, day: float, amount: str, cur: str = "EUR") -> str:
    order = f"o-{day}-{amount}"
    command = m.RecordPurchase(
        customer_id=customer,
        order_id=order,
        amount=amount,
        currency=cur,
        occurred_at=T0 + day * DAY,
    )
    assert service.execute(command, CLERK).problem is None
    return order


def react(runner: LoyaltyRunner) -> None:
    for _ in range(100):
        if runner.react_once() == 0:
            return
    raise AssertionError("the runner did not catch up")


def points_events(store: EventStore, customer: UUID) -> list[tuple[str, Any, Any, str, float]]:
    """(type, points or tier, reason, actor, business day) of the customer's loyalty events."""
    kinds = {"earned", "redeemed", "expired", "revoked"}
    found = []
    for _, e in store.history(customer):
        kind = e.TYPE.removeprefix("customer.")
        if kind.removeprefix("points_") in kinds or kind == "tier_changed":
            value = getattr(e, "tier" if kind == "tier_changed" else "points")
            found.append((kind, value, e.data()["reason"], e.actor, (e.occurred_at - T0) / DAY))
    return found


def rule(name: str, version: int = 1) -> str:
    return f"policy loyalty v{version}, rule {name}"


def ledger(store: EventStore, customer: UUID) -> Ledger:
    found = Ledger()
    for _, e in store.history(customer):
        found.fold(e.TYPE, e.data(), e.occurred_at, e.originator_version)
    return found


def test_points_are_earned_once_per_order_and_tiers_follow_spend(
    store: EventStore, service: CommandService, runner: LoyaltyRunner
) -> None:
    ada = register(service, "Ada")
    first = buy(service, ada, 1, "33.33")  # 49.995 -> 50 (half up)
    buy(service, ada, 2, "70.00")  # 105 points; spend 103.33 -> silver
    buy(service, ada, 3, "10", "USD")  # 10 points; USD spend does not count for tiers
    react(runner)
    head = store.head()
    assert runner.checkpoints is not None
    with runner.checkpoints.transaction() as tx:  # every purchase delivered again
        tx.execute("DELETE FROM policy_checkpoints WHERE name = ?", ("loyalty",))
    react(runner)
    assert runner.sweep(T0 + 4 * DAY).recorded == 0  # nothing new: all decided on reaction
    assert store.head() == head
    assert points_events(store, ada) == [
        ("points_earned", 50, rule("earn_per_purchase"), ACTOR, 1),
        ("tier_changed", "bronze", rule("tier_qualified"), ACTOR, 1),
        ("points_earned", 105, rule("earn_per_purchase"), ACTOR, 2),
        ("tier_changed", "silver", rule("tier_qualified"), ACTOR, 2),
        ("points_earned", 10, rule("earn_per_purchase"), ACTOR, 3),
    ]
    customer = store.customer(ada)
    assert (customer.points, customer.tier) == (165, "silver")
    lots = ledger(store, ada).lots
    assert (lots[0].order_id, lots[0].expires_at) == (first, T0 + 91 * DAY)
    tier_event = [e for _, e in store.history(ada) if isinstance(e, TierChanged)][-1]
    assert tier_event.spend == {"EUR": "103.33"}


def test_refund_takes_points_back_and_the_tier_drops_after_the_grace_period(
    store: EventStore, service: CommandService, runner: LoyaltyRunner
) -> None:
    bob = register(service, "Bob")
    buy(service, bob, 1, "20")  # 30 points
    big = buy(service, bob, 2, "100")  # 150 points, spend 120 -> silver
    react(runner)
    refund = m.RefundPurchase(customer_id=bob, order_id=big, occurred_at=T0 + 5 * DAY)
    assert service.execute(refund, CLERK).problem is None
    assert service.execute(refund, CLERK).problem is None  # a refund again changes nothing
    react(runner)
    assert store.customer(bob).points == 30
    # qualified for bronze from day 5; silver holds for the 30 days of grace
    assert runner.sweep(T0 + 34 * DAY).recorded == 0
    assert runner.sweep(T0 + 40 * DAY).recorded == 1
    assert points_events(store, bob)[-3:] == [
        ("tier_changed", "silver", rule("tier_qualified"), ACTOR, 2),
        ("points_revoked", 150, rule("refund_takes_back_points"), ACTOR, 5),
        ("tier_changed", "bronze", rule("tier_downgrade_after_grace"), ACTOR, 35),
    ]
    assert store.customer(bob).tier == "bronze"


def test_a_refund_after_the_points_were_spent_takes_what_is_left(
    store: EventStore, service: CommandService, runner: LoyaltyRunner
) -> None:
    cy = register(service, "Cy")
    order = buy(service, cy, 1, "20")  # 30 points
    react(runner)
    redeem = m.RedeemPoints(customer_id=cy, points=25, occurred_at=T0 + 2 * DAY)
    assert service.execute(redeem, CLERK).problem is None
    refund = m.RefundPurchase(customer_id=cy, order_id=order, occurred_at=T0 + 3 * DAY)
    service.execute(refund, CLERK)
    react(runner)
    assert points_events(store, cy)[-1][:2] == ("points_revoked", 5)
    assert store.customer(cy).points == 0
    with pytest.raises(InvalidTransition):
        service.execute(m.RedeemPoints(customer_id=cy, points=1), CLERK)


def test_lots_expire_fifo_at_their_age_by_the_sweep(
    store: EventStore, service: CommandService, runner: LoyaltyRunner
) -> None:
    dee = register(service, "Dee")
    buy(service, dee, 0, "10")  # 15 points, expire day 90
    buy(service, dee, 50, "20")  # 30 points, expire day 140
    react(runner)
    redeem = m.RedeemPoints(customer_id=dee, points=20, occurred_at=T0 + 60 * DAY)
    assert service.execute(redeem, CLERK).problem is None  # 15 from lot 1, 5 from lot 2
    report = runner.sweep(T0 + 100 * DAY)
    assert report.recorded == 0  # lot 1 was used up
    report = runner.sweep(T0 + 150 * DAY)
    assert points_events(store, dee)[-1] == ("points_expired", 25, rule("lot_expired"), ACTOR, 140)
    assert store.customer(dee).points == 0
    assert runner.sweep(T0 + 150 * DAY).recorded == 0


def test_two_sweeps_at_once_then_redelivery_record_each_step_once(
    store: EventStore, service: CommandService, policies: PolicyService, database_url: str
) -> None:
    people = [register(service, f"P{i}") for i in range(6)]
    for i, person in enumerate(people):
        buy(service, person, 1, str(100 + 50 * i))
    checkpoints = open_read_store(database_url, pool_size=1)
    runners = [LoyaltyRunner(store, service, policies, checkpoints) for _ in range(2)]
    threads = [threading.Thread(target=r.sweep, args=(T0 + 200 * DAY,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    runners[0].sweep(T0 + 200 * DAY)  # whatever a conflict left undecided
    # redelivery: every purchase reacted to, then the checkpoint lost and all reacted to again
    while runners[0].react_once():
        pass
    with checkpoints.transaction() as tx:
        tx.execute("UPDATE policy_checkpoints SET position = 0 WHERE name = ?", ("loyalty",))
    while runners[1].react_once():
        pass
    assert runners[1].sweep(T0 + 200 * DAY).recorded == 0  # nothing left, nothing twice
    checkpoints.close()
    for i, person in enumerate(people):
        kinds = [e[0] for e in points_events(store, person)]
        assert kinds.count("points_earned") == 1 and kinds.count("points_expired") == 1
        assert store.customer(person).points == 0
        assert kinds.count("tier_changed") == 1  # the spend is still in the window
        assert store.customer(person).tier == ("silver" if i < 4 else "gold")


def test_a_policy_change_applies_from_its_effective_time(
    store: EventStore, service: CommandService, policies: PolicyService, runner: LoyaltyRunner
) -> None:
    eve = register(service, "Eve")
    buy(service, eve, 10, "10")
    changed = {**POLICY, "earn": {"EUR": "3"}}
    policies.define("loyalty", changed, Context(actor="ops"), effective_at=T0 + 20 * DAY)
    buy(service, eve, 30, "10")
    head = store.head()
    planned = [p.view() for p in runner.simulate(T0 + 40 * DAY)]
    assert store.head() == head  # a simulation records nothing
    assert [
        (p["kind"], p["points"], p["policy_version"]) for p in planned if p["kind"] == "earn"
    ] == [
        ("earn", 15, 1),
        ("earn", 30, 2),
    ]
    runner.sweep(T0 + 40 * DAY)
    earned = [e for e in points_events(store, eve) if e[0] == "points_earned"]
    assert [(e[1], e[2]) for e in earned] == [
        (15, rule("earn_per_purchase", 1)),
        (30, rule("earn_per_purchase", 2)),
    ]
