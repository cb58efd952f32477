"""The loyalty policy on its own: its document (defaults, validation naming the field), earning
and its rounding, lots leaving FIFO, tier thresholds per currency, the downgrade grace period,
and :func:`domain.loyalty_plan.plan` (steps in order, each once, never before the version took
effect)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidInput
from domain.loyalty import LoyaltyPolicy, Order, TierFacts, spend_at, tier_decisions
from domain.loyalty_plan import Member, Version, plan
from domain.points import Ledger
from domain.policy import canonical, parse_document

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = LoyaltyPolicy.model_validate(
    {
        "earn": {"EUR": "1", "USD": "0.5"},
        "expiry_days": 30,
        "tiers": {
            "EUR": {"silver": "100", "gold": "200", "platinum": "400"},
            "USD": {"silver": "150", "gold": "300", "platinum": "600"},
        },
        "downgrade_grace_days": 10,
    }
)


# ------------------------------------------------------------------------------ the document


def test_the_empty_document_is_the_default_policy_in_canonical_form() -> None:
    assert canonical("loyalty", {}) == {
        "earn": {"EUR": "1"},
        "rounding": "down",
        "expiry_days": 365,
        "spend_window_days": 365,
        "tiers": {"EUR": {"silver": "500", "gold": "2000", "platinum": "5000"}},
        "downgrade_grace_days": 30,
    }


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"earn": {"eur": "1"}}, "document.earn.eur"),
        ({"earn": {"EUR": "1.0000001"}}, "document.earn.EUR"),
        ({"earn": {"EUR": "01"}}, "document.earn.EUR"),
        ({"earn": []}, "document.earn"),
        ({"rounding": "ceiling"}, "document.rounding"),
        ({"expiry_days": 3651}, "document.expiry_days"),
        ({"spend_window_days": "365"}, "document.spend_window_days"),
        ({"tiers": {"EUR": {"silver": "10", "gold": "10"}}}, "document.tiers.EUR.gold"),
        ({"tiers": {"EUR": {"silver": "0"}}}, "document.tiers.EUR.silver"),
        ({"tiers": {"EUR": {"diamond": "1"}}}, "document.tiers.EUR.diamond"),
        ({"tiers": {"usd": {}}}, "document.tiers.usd"),
    ],
)
def test_a_bad_document_is_refused_naming_the_field(document: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_document("loyalty", document)
    assert caught.value.field == field


# ------------------------------------------------------------------------------ earning


@pytest.mark.parametrize(
    ("rounding", "amount", "points"),
    [
        ("down", "12.99", 19),  # x 1.5 = 19.485
        ("up", "12.99", 20),
        ("half_up", "12.99", 19),
        ("half_up", "13.00", 20),  # 19.5
        ("half_even", "13.00", 20),  # 19.5 -> 20 (even)
        ("half_even", "11.00", 16),  # 16.5 -> 16 (even)
        ("half_up", "11.00", 17),
        ("down", "0.50", 0),
    ],
)
def test_points_are_the_amount_times_the_rate_rounded_by_the_rule(
    rounding: str, amount: str, points: int
) -> None:
    policy = LoyaltyPolicy.model_validate({"earn": {"EUR": "1.5"}, "rounding": rounding})
    assert policy.points_for(Decimal(amount), "EUR") == points
    assert policy.points_for(Decimal(amount), "GBP") == 0  # no rate, no points


# ------------------------------------------------------------------------------ lots, FIFO


def earned(ledger: Ledger, day: int, points: int, order: str, expiry: int | None = 30) -> None:
    expires = None if expiry is None else T0 + (day + expiry) * DAY
    data = {"points": points, "order_id": order, "expires_at": expires}
    ledger.fold("customer.points_earned", data, T0 + day * DAY, 0)


def test_redemptions_take_the_oldest_lots_first() -> None:
    ledger = Ledger()
    earned(ledger, 5, 10, "b")
    earned(ledger, 1, 10, "a")  # recorded later, earned earlier: still the oldest
    ledger.fold("customer.points_redeemed", {"points": 15}, T0 + 6 * DAY, 0)
    assert [(lot.key, lot.remaining) for lot in ledger.lots] == [("a", 0), ("b", 5)]
    assert ledger.balance == 5


def test_an_expiry_takes_the_expired_lots_and_a_revocation_its_own_order() -> None:
    ledger = Ledger()
    earned(ledger, 0, 10, "old", expiry=None)  # never expires
    earned(ledger, 1, 10, "a")  # expires day 31
    earned(ledger, 2, 10, "b")
    ledger.fold("customer.points_expired", {"points": 10}, T0 + 31 * DAY, 0)
    assert [lot.remaining for lot in ledger.lots] == [10, 0, 10]
    ledger.fold("customer.points_revoked", {"points": 15, "order_id": "b"}, T0 + 32 * DAY, 0)
    assert [lot.remaining for lot in ledger.lots] == [5, 0, 0]
    assert (ledger.expired, ledger.revoked, ledger.revoked_orders) == (10, 15, {"b"})


# ------------------------------------------------------------------------------ tiers


def test_the_best_tier_any_currency_reaches_counts() -> None:
    assert POLICY.qualified({}) == "bronze"
    assert POLICY.qualified({"EUR": Decimal("99.99")}) == "bronze"
    assert POLICY.qualified({"EUR": Decimal("100")}) == "silver"
    assert POLICY.qualified({"EUR": Decimal("100"), "USD": Decimal("300")}) == "gold"
    assert POLICY.qualified({"GBP": Decimal("10000")}) == "bronze"


def test_spend_is_the_rolling_window_without_refunded_orders() -> None:
    orders = [
        Order("a", T0, Decimal("50"), "EUR"),
        Order("b", T0 + 10 * DAY, Decimal("70"), "EUR", refunded_at=T0 + 20 * DAY),
    ]
    assert spend_at(orders, POLICY, T0 + 15 * DAY)["EUR"] == Decimal("120")
    assert spend_at(orders, POLICY, T0 + 20 * DAY)["EUR"] == Decimal("50")
    assert spend_at(orders, POLICY, T0 + 365 * DAY)["EUR"] == Decimal("0")  # a out of window
    assert spend_at(orders, POLICY, T0 + 364 * DAY)["EUR"] == Decimal("50")


def tiers(days_amounts: list[tuple[int, str]], at_day: int, tier: str | None = None) -> list[Any]:
    orders = tuple(Order(f"o{d}", T0 + d * DAY, Decimal(a), "EUR") for d, a in days_amounts)
    made = tier_decisions(TierFacts(tier, None, orders), POLICY, T0 - DAY, T0 + at_day * DAY)
    return [(d.tier, d.rule, (d.at - T0) / DAY) for d in made]


def test_an_upgrade_applies_at_the_purchase_a_downgrade_after_the_grace_period() -> None:
    history = [(0, "50"), (10, "60"), (20, "250")]  # 50, 110 (silver), 360 (gold)
    assert tiers(history, 20) == [
        ("bronze", "tier_qualified", 0),
        ("silver", "tier_qualified", 10),
        ("gold", "tier_qualified", 20),
    ]
    # day 365: order 0 leaves (310: gold); day 375: 250 (gold); day 385: nothing (bronze)
    assert tiers(history, 394)[3:] == []  # in the grace period still
    assert tiers(history, 395)[3:] == [("bronze", "tier_downgrade_after_grace", 395)]


def test_qualifying_again_within_the_grace_period_keeps_the_tier() -> None:
    history = [(0, "150"), (366, "150")]  # silver; drops out on day 365; back on day 366
    assert tiers(history, 500) == [("silver", "tier_qualified", 0)]
    assert tiers(history, 741)[1:] == [("bronze", "tier_downgrade_after_grace", 741)]


def test_without_grace_a_downgrade_is_immediate() -> None:
    strict = POLICY.model_copy(update={"downgrade_grace_days": 0})
    orders = (Order("a", T0, Decimal("150"), "EUR"),)
    made = tier_decisions(TierFacts(None, None, orders), strict, T0, T0 + 400 * DAY)
    assert [(d.tier, (d.at - T0) / DAY) for d in made] == [("silver", 0), ("bronze", 365)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 800), st.sampled_from(["20", "60", "150", "300"])),
        min_size=1,
        max_size=12,
    ),
    st.integers(0, 900),
)
def test_sweeping_in_steps_makes_the_same_decisions_as_one_sweep(
    history: list[tuple[int, str]], cut: int
) -> None:
    """A sweep at T after a sweep at an earlier time adds exactly what one sweep at T makes."""
    orders = tuple(
        Order(f"o{i}", T0 + d * DAY, Decimal(a), "EUR") for i, (d, a) in enumerate(history)
    )
    end = T0 + 1000 * DAY
    whole = tier_decisions(TierFacts(None, None, orders), POLICY, T0, end)
    first = tier_decisions(TierFacts(None, None, orders), POLICY, T0, T0 + cut * DAY)
    tier, since = (first[-1].tier, first[-1].at) if first else (None, None)
    rest = tier_decisions(TierFacts(tier, since, orders), POLICY, T0, end)
    assert [(d.tier, d.at) for d in first + rest] == [(d.tier, d.at) for d in whole]


# ------------------------------------------------------------------------------ the plan


def member(purchases: dict[str, tuple[int, str]], refunded: dict[str, int] | None = None) -> Member:
    bought = {
        order: {"occurred_at": T0 + day * DAY, "amount": Decimal(amount), "currency": "EUR"}
        for order, (day, amount) in purchases.items()
    }
    back = {o: bought.pop(o) | {"refunded_at": T0 + d * DAY} for o, d in (refunded or {}).items()}
    return Member(True, None, None, bought, back, frozenset())


def test_the_plan_earns_under_the_version_at_each_purchase_and_expires_fifo() -> None:
    doubled = POLICY.model_copy(update={"earn": {"EUR": "2"}})
    versions = [Version(1, T0, POLICY), Version(2, T0 + 10 * DAY, doubled)]
    steps = plan(member({"a": (1, "30"), "b": (12, "30")}), Ledger(), versions, T0 + 45 * DAY)
    assert [(s.kind, s.points or s.tier, s.version, (s.at - T0) / DAY) for s in steps] == [
        ("earn", 30, 1, 1),
        ("tier", "bronze", 2, 10),  # the tier rules start with the version in force at T
        ("earn", 60, 2, 12),
        ("expire", 30, 2, 31),  # the version in force at the expiry
        ("expire", 60, 2, 42),
    ]
    assert steps[0].reason == "policy loyalty v1, rule earn_per_purchase"
    assert steps[0].expires_at == T0 + 31 * DAY


def test_a_refunded_order_earns_nothing_again_and_its_points_come_back_once() -> None:
    ledger = Ledger()
    earned(ledger, 1, 30, "a")
    versions = [Version(1, T0, POLICY)]
    steps = plan(member({"a": (1, "30")}, refunded={"a": 3}), ledger, versions, T0 + 5 * DAY)
    assert [(s.kind, s.points, s.rule) for s in steps if s.kind != "tier"] == [
        ("revoke", 30, "refund_takes_back_points")
    ]
    ledger.fold("customer.points_revoked", {"points": 30, "order_id": "a"}, T0 + 3 * DAY, 0)
    again = plan(member({"a": (1, "30")}, refunded={"a": 3}), ledger, versions, T0 + 5 * DAY)
    assert [s for s in again if s.kind != "tier"] == []


def test_nothing_is_planned_before_the_first_version_or_for_a_customer_not_live() -> None:
    versions = [Version(1, T0 + 50 * DAY, POLICY)]
    assert plan(member({"a": (1, "30")}), Ledger(), versions, T0 + 40 * DAY) == []
    gone = Member(False, None, None, member({"a": (1, "30")}).purchases, {}, frozenset())
    assert plan(gone, Ledger(), versions, T0 + 60 * DAY) == []
