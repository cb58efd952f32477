"""The lifecycle policy on its own: its document (defaults, validation naming the field), the
adaptive inactivity period, and :func:`domain.lifecycle.decide` — case by case, and as
properties over generated purchase histories (decision points, convergence, and the same
decisions however often the sweep runs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import lifecycle
from domain.errors import InvalidInput
from domain.lifecycle import (
    Decision,
    Facts,
    InactivityRule,
    LifecyclePolicy,
    Purchase,
    decide,
    median_gap,
    reason,
)
from domain.policy import canonical, parse_document

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = (
    LifecyclePolicy()
)  # active: 2 in 90d; loyal: 5 in 365d; at_risk 3xgap [30,180]; churned 6xgap [90,365]


def facts(stage: str, days: Sequence[float], *, since: float = -1, status: str = "active") -> Facts:
    bought = tuple(Purchase(T0 + d * DAY, Decimal("10"), "EUR") for d in sorted(days))
    return Facts(status, stage, T0 + since * DAY, bought)


def settle(current: Facts, at: datetime, effective_at: datetime = T0 - 365 * DAY) -> list[Decision]:
    """Every decision a sweep at ``at`` makes, applied one after the other."""
    return lifecycle.settle(current, POLICY, effective_at, at)


# ------------------------------------------------------------------------------ the document


def test_the_empty_document_is_the_default_policy_in_canonical_form() -> None:
    doc = canonical("lifecycle", {})
    assert doc["at_risk"] == {"gap_multiple": 3.0, "min_days": 30, "max_days": 180}
    assert doc["loyal"]["min_spend"] is None and doc["loyal"]["currency"] == "EUR"
    partial = canonical("lifecycle", {"churned": {"min_days": 100}})["churned"]
    assert partial == {"gap_multiple": 6.0, "min_days": 100, "max_days": 365}
    assert canonical("lifecycle", {"loyal": {"min_spend": "0500.5", "currency": "usd"}})[
        "loyal"
    ] | {"window_days": 0} == {
        "window_days": 0,
        "min_purchases": 5,
        "min_spend": "500.5",
        "currency": "USD",
    }


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"at_risk": {"gap_multiple": 3, "min_days": "30", "max_days": 180}}, "at_risk.min_days"),
        ({"at_risk": {"gap_multiple": True, "min_days": 3, "max_days": 9}}, "at_risk.gap_multiple"),
        ({"at_risk": {"gap_multiple": 0, "min_days": 3, "max_days": 9}}, "at_risk.gap_multiple"),
        ({"at_risk": {"gap_multiple": 2, "min_days": 30, "max_days": 20}}, "at_risk.max_days"),
        ({"at_risk": {"min_days": 200}}, "at_risk.max_days"),  # default max 180
        ({"churned": {"gap_multiple": 2, "min_days": 90, "max_days": 365}}, "churned.gap_multiple"),
        ({"churned": {"gap_multiple": 9, "min_days": 30, "max_days": 365}}, "churned.min_days"),
        ({"churned": {"gap_multiple": 9, "min_days": 90, "max_days": 180}}, "churned.max_days"),
        ({"loyal": {"min_spend": "-5"}}, "loyal.min_spend"),
        ({"loyal": {"min_spend": 500}}, "loyal.min_spend"),
        ({"loyal": {"currency": "XXY"}}, "loyal.currency"),
        ({"loyal": {"min_purchases": 2}, "active": {"min_purchases": 3}}, "loyal.min_purchases"),
        ({"active": {"window_days": 0}}, "active.window_days"),
        ({"active": {"min_purchases": 1}}, "active.min_purchases"),
        ({"nightly": True}, "nightly"),
    ],
)
def test_a_bad_document_is_refused_naming_the_field(document: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_document("lifecycle", document)
    assert refused.value.field == f"document.{field}"


@pytest.mark.parametrize(("name", "document"), [("nope", {}), ("lifecycle", [1])])
def test_unknown_policies_and_non_objects_are_refused(name: str, document: object) -> None:
    with pytest.raises(InvalidInput):
        parse_document(name, document)


def test_the_inactivity_period_is_a_bounded_multiple_of_the_customers_rhythm() -> None:
    rule = InactivityRule(gap_multiple=3, min_days=30, max_days=180)
    assert rule.period(None) == 180 * DAY  # no rhythm yet: the longest period
    assert rule.period(20 * DAY) == 60 * DAY
    assert rule.period(2 * DAY) == 30 * DAY
    assert rule.period(100 * DAY) == 180 * DAY
    assert median_gap(facts("new", [0, 10, 11, 40]).purchases) == 10 * DAY


# ------------------------------------------------------------------------------- decisions


def test_each_rule_in_turn() -> None:
    assert settle(facts("prospect", []), T0 + 400 * DAY) == []
    assert settle(facts("new", [0]), T0 + 10 * DAY) == []  # the aggregate made them new
    assert settle(facts("new", [0, 20]), T0 + 25 * DAY) == [
        Decision("active", "active_repeat_purchases", T0 + 20 * DAY)
    ]
    monthly = [0, 30, 60, 90, 120]
    assert settle(facts("active", monthly), T0 + 121 * DAY) == [
        Decision("loyal", "loyal_sustained_purchasing", T0 + 120 * DAY)
    ]
    # median gap 30 days: at risk after 90 days without a purchase, churned after 180
    assert settle(facts("loyal", monthly, since=120), T0 + 300 * DAY) == [
        Decision("at_risk", "at_risk_after_inactivity", T0 + 210 * DAY),
        Decision("churned", "churned_after_inactivity", T0 + 300 * DAY),
    ]


def test_a_purchase_after_at_risk_or_churn_re_stages() -> None:
    assert settle(facts("at_risk", [0, 200], since=100), T0 + 201 * DAY) == [
        Decision("active", "active_returning_purchase", T0 + 200 * DAY)
    ]
    # the aggregate reactivated them (as active, not a deliberate change): loyal again
    back = facts("active", [0, 30, 60, 90, 400, 410, 420, 430, 440], since=270)
    assert settle(back, T0 + 441 * DAY) == [
        Decision("loyal", "loyal_sustained_purchasing", T0 + 440 * DAY)
    ]


def test_loyalty_can_ask_for_spend_too() -> None:
    policy = LifecyclePolicy.model_validate({"loyal": {"min_spend": "100", "min_purchases": 5}})
    monthly = facts("active", [0, 30, 60, 90, 120])  # 5 x 10 EUR
    assert decide(monthly, policy, T0, T0 + 121 * DAY) is None
    rich = replace(
        monthly, purchases=tuple(replace(p, amount=Decimal(30)) for p in monthly.purchases)
    )
    assert decide(rich, policy, T0, T0 + 121 * DAY) == Decision(
        "loyal", "loyal_sustained_purchasing", T0 + 120 * DAY
    )
    dollars = replace(rich, purchases=tuple(replace(p, currency="USD") for p in rich.purchases))
    assert decide(dollars, policy, T0, T0 + 121 * DAY) is None


def test_a_manual_stage_holds_until_the_next_decision_point() -> None:
    manual = facts("loyal", [0, 10], since=15)  # set by hand after the last purchase
    assert decide(manual, POLICY, T0, T0 + 20 * DAY) is None
    # median gap 10 days → at risk 30 days after the last purchase, which is after the change
    assert decide(manual, POLICY, T0, T0 + 41 * DAY) == Decision(
        "at_risk", "at_risk_after_inactivity", T0 + 40 * DAY
    )


def test_a_version_never_dates_a_decision_before_it_took_effect() -> None:
    effective = T0 + 250 * DAY
    # at risk from day 120, churned from day 210: both passed before the version took effect
    assert settle(facts("active", [0, 30]), T0 + 260 * DAY, effective) == [
        Decision("churned", "churned_after_inactivity", effective)
    ]
    assert settle(facts("active", [0, 30]), T0 + 200 * DAY, T0 + 150 * DAY) == [
        Decision("at_risk", "at_risk_after_inactivity", T0 + 150 * DAY)
    ]


def test_merged_erased_and_churned_customers() -> None:
    for status in ("merged", "erased"):
        assert decide(facts("active", [0], status=status), POLICY, T0, T0 + 900 * DAY) is None
    churned = facts("churned", [0, 30, 60, 90], since=95, status="churned")
    assert decide(churned, POLICY, T0, T0 + 900 * DAY) is None


def test_the_reason_names_the_rule_and_the_version() -> None:
    assert reason("at_risk_after_inactivity", 3) == (
        "policy lifecycle v3, rule at_risk_after_inactivity"
    )


# ------------------------------------------------------------------------------ properties

days = st.lists(st.integers(min_value=0, max_value=900), max_size=12)
stages = st.sampled_from(["prospect", "new", "active", "loyal", "at_risk"])
RULES = {
    "active": {"active_repeat_purchases", "active_returning_purchase"},
    "new": {"new_first_purchases"},
    "loyal": {"loyal_sustained_purchasing"},
    "at_risk": {"at_risk_after_inactivity"},
    "churned": {"churned_after_inactivity"},
}


@st.composite
def policies(draw: st.DrawFn) -> LifecyclePolicy:
    """Any valid policy: churn strictly after at-risk in every part."""
    multiple = draw(st.floats(0.5, 5))
    low = draw(st.integers(1, 100))
    high = draw(st.integers(low, 300))
    active = draw(st.integers(2, 4))
    return LifecyclePolicy.model_validate(
        {
            "active": {"window_days": draw(st.integers(1, 200)), "min_purchases": active},
            "loyal": {
                "window_days": draw(st.integers(1, 500)),
                "min_purchases": draw(st.integers(active, 8)),
            },
            "at_risk": {"gap_multiple": multiple, "min_days": low, "max_days": high},
            "churned": {
                "gap_multiple": multiple + draw(st.floats(0.1, 5)),
                "min_days": low + draw(st.integers(1, 100)),
                "max_days": high + draw(st.integers(1, 300)),
            },
        }
    )


@settings(max_examples=400, deadline=None)
@given(
    days, stages, policies(), st.integers(-1, 900), st.integers(-400, 1200), st.integers(0, 1200)
)
def test_decisions_are_due_ordered_named_and_converge(
    bought: list[int], stage: str, policy: LifecyclePolicy, since: int, effective: int, at: int
) -> None:
    start = facts(stage, [float(d) for d in bought], since=since)
    in_force, moment = T0 + effective * DAY, T0 + at * DAY
    made = lifecycle.settle(start, policy, in_force, moment)
    assert len(made) <= 3
    points = [d.at for d in made]
    assert points == sorted(points)
    assert all(start.stage_since < p <= moment for p in points)
    assert all(p >= in_force for p in points)  # never before the version took effect
    assert all(a.stage != b.stage for a, b in pairwise(made))
    assert all(d.rule in RULES[d.stage] for d in made)
    assert not made or made[0].stage != stage
    settled = start
    for decision in made:
        settled = settled.after(decision)
    assert decide(settled, policy, in_force, moment) is None
    for status in ("merged", "erased"):
        assert decide(replace(start, status=status), policy, in_force, moment) is None


@settings(max_examples=300, deadline=None)
@given(days, stages, policies(), st.integers(0, 1200), st.integers(0, 1200))
def test_the_same_decisions_however_often_the_sweep_runs(
    bought: list[int], stage: str, policy: LifecyclePolicy, first: int, second: int
) -> None:
    """With no purchase between two sweeps, sweeping at T1 then T2 decides what one sweep at T2
    decides (decisions are dated at their decision points, not at the sweep)."""
    start = facts(stage, [float(d) for d in bought])
    early, late = T0 + min(first, second) * DAY, T0 + max(first, second) * DAY
    if any(early < T0 + d * DAY <= late for d in bought):
        return
    in_force = T0 - 365 * DAY
    current, twice = start, []
    for at in (early, late):
        for decision in lifecycle.settle(current, policy, in_force, at):
            twice.append(decision)
            current = current.after(decision)
    assert twice == lifecycle.settle(start, policy, in_force, late)


def test_a_manual_stage_is_never_undone_before_a_later_decision_point() -> None:
    """Any stage set by hand after the last purchase holds until the at-risk period ends."""
    for stage in ("new", "active", "loyal", "prospect"):
        manual = facts(stage, [0, 10, 20], since=25)
        assert decide(manual, POLICY, T0, T0 + 49 * DAY) is None  # at risk from day 50
        assert decide(manual, POLICY, T0, T0 + 50 * DAY) == Decision(
            "at_risk", "at_risk_after_inactivity", T0 + 50 * DAY
        )
