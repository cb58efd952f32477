"""Months of simulated purchases over 5,000 customers with a controllable business clock: the
loyalty policy's sweeps (through the real command service) earn, take back and expire points and
move tiers exactly as an independent model computed here says.

The model is written from the rules, not from the implementation: points are replayed event
by event in business-time order (a lot per purchase, FIFO redemptions, a refund taking its
order's points back from its own lot first, lots expiring at their age), and tiers day by day
(every purchase, refund and window edge falls at 10:00, so a daily look at 10:00 sees every
change; a tier drops once the customer has been below it for the grace period). The sweeps
run every 120 days only: the decisions must not depend on how often they run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

import pytest

from commands import messages as m
from commands.policies import PolicyService
from commands.service import CommandService, Context
from consumers.loyalty_policy import LoyaltyRunner
from infra.store import EventStore

DAY = timedelta(days=1)
T0 = (datetime.now(UTC) - 500 * DAY).replace(hour=0, minute=0, second=0, microsecond=0)
CUSTOMERS = 5_000
DAYS = 450
SWEEPS = (120, 240, 360, 450)  # business days the sweeps run at (00:00)
EXPIRY, WINDOW, GRACE = 120, 180, 30
RATE = {"EUR": Decimal("1.5"), "USD": Decimal("1")}
SILVER, GOLD, PLATINUM = Decimal(200), Decimal(600), Decimal(1500)
POLICY = {
    "earn": {currency: str(rate) for currency, rate in RATE.items()},
    "rounding": "half_up",
    "expiry_days": EXPIRY,
    "spend_window_days": WINDOW,
    "tiers": {"EUR": {"silver": "200", "gold": "600", "platinum": "1500"}},
    "downgrade_grace_days": GRACE,
}
CTX = Context(actor="simulation")
pytestmark = pytest.mark.backends("memory")


@dataclass
class Person:
    """One simulated customer: orders (day, amount, currency), refunds (order -> day) and
    redemptions (sweep day -> points wanted)."""

    orders: dict[str, tuple[int, Decimal, str]] = field(default_factory=dict)
    refunds: dict[str, int] = field(default_factory=dict)
    redeem: dict[int, int] = field(default_factory=dict)


def generate(rng: random.Random) -> list[Person]:
    people = []
    for _ in range(CUSTOMERS):
        person = Person()
        for day in sorted(rng.sample(range(DAYS), rng.randint(0, 5))):
            amount = Decimal(rng.randint(500, 40_000)) / 100
            currency = "USD" if rng.random() < 0.15 else "EUR"
            order = f"o-{day}"
            person.orders[order] = (day, amount, currency)
            later = next((s for s in SWEEPS if s > day), None)  # refunded after it earned
            if later is not None and later < DAYS - 1 and rng.random() < 0.08:
                person.refunds[order] = rng.randint(later, DAYS - 1)
        for sweep in SWEEPS:
            if rng.random() < 0.3:
                person.redeem[sweep] = rng.randint(10, 400)
        people.append(person)
    return people


# --------------------------------------------------------------------- the independent model


@dataclass
class Expected:
    earned: int = 0
    redeemed: int = 0
    expired: int = 0
    revoked: int = 0
    balance: int = 0
    redemptions: dict[int, int] = field(default_factory=dict)  # sweep day -> points redeemed
    tiers: list[tuple[str, int]] = field(default_factory=list)  # (tier, day)


def points(amount: Decimal, currency: str) -> int:
    return int((amount * RATE[currency]).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_points(person: Person, end: int) -> Expected:
    """Replay the person's points in business-time order (ties: earn, take back, expire;
    redemptions at a sweep's 00:00 after everything before it)."""
    hour = 10 / 24
    agenda: list[tuple[float, int, str]] = []
    for order, (day, _, _) in person.orders.items():
        agenda.append((day + hour, 0, order))
        agenda.append((day + EXPIRY + hour, 2, order))
        if order in person.refunds:
            agenda.append((person.refunds[order] + hour, 1, order))
    agenda += [(sweep, 3, "") for sweep in person.redeem]
    agenda.sort()
    lots: dict[str, int] = {}  # order -> remaining, in earning order (orders by day)
    result = Expected()

    def take(wanted: int, first: str | None = None) -> int:
        taken = 0
        for order in ([first] if first else []) + sorted(lots, key=lambda o: person.orders[o][0]):
            share = min(wanted - taken, lots[order])
            lots[order] -= share
            taken += share
        return taken

    for when, kind, order in agenda:
        if when > end:
            break
        if kind == 0:
            lots[order] = points(*person.orders[order][1:])
            result.earned += lots[order]
        elif kind == 1:
            result.revoked += take(
                min(points(*person.orders[order][1:]), sum(lots.values())), order
            )
        elif kind == 2:
            result.expired += lots[order]
            lots[order] = 0
        else:
            wanted = person.redeem[int(when)]
            if wanted <= sum(lots.values()):
                result.redeemed += take(wanted)
                result.redemptions[int(when)] = wanted
    result.balance = sum(lots.values())
    return result


def expected_tiers(person: Person, end: int) -> list[tuple[str, int]]:
    """Day by day at 10:00: the tier the rolling EUR spend reaches; up at once, down after
    ``GRACE`` days below."""
    delta = [Decimal(0)] * (end + WINDOW + 2)
    for order, (day, amount, currency) in person.orders.items():
        if currency == "EUR":
            delta[day] += amount
            delta[min(day + WINDOW, person.refunds.get(order, day + WINDOW))] -= amount
    ranks = ["bronze", "silver", "gold", "platinum"]
    first = min((day for day, _, _ in person.orders.values()), default=None)
    changes: list[tuple[str, int]] = []
    tier, below, spend = -1, None, Decimal(0)
    for day in range(end):
        spend += delta[day]
        if first is None or day < first:
            continue
        qualified = sum(spend >= limit for limit in (SILVER, GOLD, PLATINUM))
        if qualified >= tier:
            if qualified > tier:
                changes.append((ranks[qualified], day))
                tier = qualified
            below = None
        else:
            below = day if below is None else below
            if day - below >= GRACE:
                changes.append((ranks[qualified], day))
                tier, below = qualified, None
    return changes


# --------------------------------------------------------------------------- the simulation


def test_months_of_purchases_match_the_independent_model(
    store: EventStore, service: CommandService
) -> None:
    people = generate(random.Random(18))
    registered = service.execute_batch(
        [m.RegisterCustomer(name=f"C{i}", occurred_at=T0) for i in range(CUSTOMERS)], CTX
    )
    ids = [UUID(str(o.customer_id)) for o in registered]
    policies = PolicyService(store)
    policies.define("loyalty", POLICY, CTX, effective_at=T0)
    runner = LoyaltyRunner(store, service, policies, None, batch_size=1000)
    done = 0
    for sweep in SWEEPS:
        commands: list[m.Command] = []
        for cid, person in zip(ids, people, strict=True):
            for order, (day, amount, currency) in person.orders.items():
                if done <= day < sweep:
                    at = T0 + (day + 10 / 24) * DAY
                    commands.append(
                        m.RecordPurchase(
                            customer_id=cid,
                            order_id=order,
                            amount=str(amount),
                            currency=currency,
                            occurred_at=at,
                        )
                    )
            for order, day in person.refunds.items():
                if done <= day < sweep:
                    at = T0 + (day + 10 / 24) * DAY
                    commands.append(
                        m.RefundPurchase(customer_id=cid, order_id=order, occurred_at=at)
                    )
        _execute(service, commands)
        report = runner.sweep(T0 + sweep * DAY)
        assert (report.customers, report.rejected) == (CUSTOMERS, 0), report.problems[:3]
        redemptions = []
        for cid, person in zip(ids, people, strict=True):
            wanted = person.redeem.get(sweep)
            if wanted is not None and wanted <= store.customer(cid).points:
                redemptions.append(
                    m.RedeemPoints(customer_id=cid, points=wanted, occurred_at=T0 + sweep * DAY)
                )
        _execute(service, redemptions)
        done = sweep
    assert runner.sweep(T0 + DAYS * DAY).recorded == 0  # a sweep again: nothing twice

    totals = {"earned": 0, "expired": 0, "redeemed": 0, "revoked": 0, "tier_changes": 0}
    for cid, person in zip(ids, people, strict=True):
        expected = expected_points(person, DAYS)
        tiers = expected_tiers(person, DAYS)
        got = {"earned": 0, "expired": 0, "redeemed": 0, "revoked": 0}
        got_tiers = []
        for event in store.customer_events(cid):
            kind = event.TYPE.removeprefix("customer.points_")
            if kind in got:
                got[kind] += event.data()["points"]
            elif event.TYPE == "customer.tier_changed":
                offset = (event.occurred_at - T0 - 10 / 24 * DAY) / DAY
                got_tiers.append((event.data()["tier"], round(offset)))
                assert event.data()["reason"].startswith("policy loyalty v1, rule tier_")
        want = {k: getattr(expected, k) for k in got}
        assert got == want, (cid, person)
        assert store.customer(cid).points == expected.balance
        assert got_tiers == tiers, (cid, person)
        for key, value in got.items():
            totals[key] += value
        totals["tier_changes"] += len(tiers)
    # the simulation exercised every rule
    assert all(value > 100 for value in totals.values()), totals


def _execute(service: CommandService, commands: Sequence[m.Command]) -> None:
    for start in range(0, len(commands), 1000):
        outcomes = service.execute_batch(commands[start : start + 1000], CTX)
        assert [o.problem for o in outcomes if o.problem] == []
