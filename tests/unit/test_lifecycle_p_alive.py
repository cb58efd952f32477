"""The lifecycle policy's alternative at-risk rule, ``at_risk.p_alive_below``: validated in the
document, at risk when the churn model's P(alive) falls below the threshold (the decision
dated at that crossing, never before the fit), falling back on the inactivity period for
customers without a repeat purchase day or without a fit, and naming the model's version."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain import lifecycle
from domain.btyd import Parameters, Summary, alive_until, p_alive
from domain.churn_model import FittedVersion
from domain.errors import InvalidInput
from domain.lifecycle import Facts, LifecyclePolicy, Purchase
from domain.policy import canonical, parse_document

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
PARAMS = Parameters(r=0.8, alpha=40.0, a=0.6, b=3.0)
DOCUMENT: dict[str, dict[str, Any]] = {
    "at_risk": {"gap_multiple": 20, "min_days": 200, "max_days": 400, "p_alive_below": 0.5},
    "churned": {"gap_multiple": 40, "min_days": 500, "max_days": 800},
}
POLICY = LifecyclePolicy.model_validate(DOCUMENT)
LONG_AGO = T0 - 365 * DAY


def model(as_of: datetime, version: int = 4) -> FittedVersion:
    return FittedVersion(version, PARAMS, as_of, 5000, -1.0, 90, "test", as_of)


def facts(days: Sequence[int], stage: str = "active") -> Facts:
    bought = tuple(Purchase(T0 + d * DAY, Decimal("10"), "EUR") for d in days)
    return Facts("active", stage, T0 + min(days) * DAY - DAY, bought)


def at_risk(current: Facts, at: datetime, fitted: FittedVersion | None) -> Any:
    made = lifecycle.settle(current, POLICY, LONG_AGO, at, fitted)
    return next((d for d in made if d.stage == "at_risk"), None), made


@pytest.mark.parametrize(
    ("value", "message"),
    [(0, "greater than 0"), (1, "less than 1"), (1.5, "less than 1"), ("0.5", "valid number")],
)
def test_the_threshold_is_validated_naming_the_field(value: object, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_document("lifecycle", {"at_risk": {"p_alive_below": value}})
    assert caught.value.field == "document.at_risk.p_alive_below"
    assert message in caught.value.reason


def test_without_a_threshold_the_canonical_form_is_unchanged() -> None:
    assert "p_alive_below" not in canonical("lifecycle", {})["at_risk"]
    stored = canonical("lifecycle", {"at_risk": {"p_alive_below": 0.25}})["at_risk"]
    assert stored == {"gap_multiple": 3.0, "min_days": 30, "max_days": 180, "p_alive_below": 0.25}


def test_at_risk_when_p_alive_falls_below_the_threshold() -> None:
    days = [0, 5, 10, 15, 20]  # x = 4 repeat days, the last on day 20
    crossing = alive_until(PARAMS, 4, 20, 0.5)
    assert crossing is not None
    point = T0 + timedelta(days=crossing)
    fitted = model(as_of=T0 + 25 * DAY)  # fitted before the crossing
    found, made = at_risk(facts(days), point + DAY, fitted)
    assert found is not None
    assert found.rule == "at_risk_p_alive_below"
    assert found.at == point
    assert found.model_version == 4
    assert found.reason(7) == "policy lifecycle v7, rule at_risk_p_alive_below, model churn v4"
    assert p_alive(PARAMS, Summary(4, 20, crossing)) == pytest.approx(0.5)
    # not yet due just before the crossing; the inactivity period alone is far later
    assert at_risk(facts(days), point - DAY, fitted)[0] is None
    assert [d.stage for d in made] == ["loyal", "at_risk"]  # 5 purchases: loyal first


def test_never_dated_before_the_fit() -> None:
    days = [0, 5, 10, 15, 20]
    later = T0 + 150 * DAY  # the fit came after the crossing
    found, _ = at_risk(facts(days), later + DAY, model(as_of=later))
    assert found is not None
    assert found.at == later


def test_the_inactivity_period_without_a_fit_or_a_repeat_purchase_day() -> None:
    for current, fitted in ((facts([0, 5, 10]), None), (facts([0]), model(T0))):
        found, _ = at_risk(current, T0 + 1000 * DAY, fitted)
        assert found is not None
        assert found.rule == "at_risk_after_inactivity"
        assert found.model_version is None
        assert found.reason(2) == "policy lifecycle v2, rule at_risk_after_inactivity"


def test_a_crossing_after_the_churn_point_goes_straight_to_churned() -> None:
    """A rare buyer's P(alive) falls slowly: below 0.05 only long after the churn period has
    run out; they are churned by the inactivity period, with no at-risk step after it."""
    rare = facts([0, 300])
    crossing = alive_until(PARAMS, 1, 300, 0.05)
    assert crossing is not None
    tight = LifecyclePolicy.model_validate(
        {**DOCUMENT, "at_risk": {**DOCUMENT["at_risk"], "p_alive_below": 0.05}}
    )
    churn_point = T0 + 300 * DAY + tight.churned.period(300 * DAY)
    assert T0 + timedelta(days=crossing) > churn_point
    made = lifecycle.settle(rare, tight, LONG_AGO, T0 + 9000 * DAY, model(T0 + 400 * DAY))
    assert [d.stage for d in made][-1:] == ["churned"]
    assert "at_risk" not in [d.stage for d in made]
