"""The churn model's mathematics: BG/NBD's closed forms against the published CDNOW example
and an independent implementation, the fit recovering known parameters from a base simulated
from the process, and a customer's churn risk from a fitted version."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from scipy import special

from domain.btyd import (
    Parameters,
    Summary,
    alive_until,
    expected_purchases,
    hyp2f1,
    log_likelihood,
    p_alive,
)
from domain.btyd_fit import FitError, fit
from domain.churn_model import FittedVersion, risk, summary_of
from tests.churn_support import simulate

# Fader, Hardie & Lee (2005), CDNOW sample (time unit: weeks)
CDNOW = Parameters(r=0.243, alpha=4.414, a=0.793, b=2.426)
POINTS = [(0, 0.0, 38.86), (1, 2.0, 30.0), (2, 30.43, 38.86), (5, 20.0, 39.0), (20, 38.0, 38.5)]


def pieces(p: Parameters, x: int, t_x: float, big_t: float) -> tuple[float, float]:
    """The likelihood's "alive at T" and "dropped out after t_x" parts (the paper's A1 A2 A3
    and A1 A2 A4), with scipy's log-gamma: an independent route to L and P(alive)."""
    common = (
        special.gammaln(p.r + x)
        - special.gammaln(p.r)
        + p.r * math.log(p.alpha)
        + special.betaln(p.a, p.b + x)
        - special.betaln(p.a, p.b)
    )
    alive = math.exp(common - (p.r + x) * math.log(p.alpha + big_t))
    if x == 0:
        return alive, 0.0
    dead = math.exp(common + math.log(p.a / (p.b + x - 1)) - (p.r + x) * math.log(p.alpha + t_x))
    return alive, dead


def test_the_published_cdnow_conditional_expectation() -> None:
    """Fader-Hardie-Lee / Hardie's spreadsheet: x=2, t_x=30.43, T=38.86 weeks → 1.226
    expected purchases in the next 39 weeks."""
    assert expected_purchases(CDNOW, Summary(2, 30.43, 38.86), 39) == pytest.approx(1.226, abs=5e-4)


@pytest.mark.parametrize(
    ("t", "published"),
    [
        (0.1429, 0.0078),
        (1.0, 0.0532),
        (3.0, 0.1506),
        (31.8571, 1.0405),
        (32.0, 1.0437),
        (78.0, 1.8576),
    ],
)
def test_the_published_cdnow_expected_purchases_of_a_new_customer(
    t: float, published: float
) -> None:
    """E[X(t)] from the paper's CDNOW curve (x = t_x = T = 0 turns the conditional form into
    the unconditional one); the published figures come from unrounded estimates, so 0.005."""
    assert expected_purchases(CDNOW, Summary(0, 0, 0), t) == pytest.approx(published, abs=5e-3)


@pytest.mark.parametrize(("x", "t_x", "big_t"), POINTS)
def test_likelihood_and_p_alive_agree_with_an_independent_implementation(
    x: int, t_x: float, big_t: float
) -> None:
    alive, dead = pieces(CDNOW, x, t_x, big_t)
    s = Summary(x, t_x, big_t)
    assert log_likelihood(CDNOW, s) == pytest.approx(math.log(alive + dead), rel=1e-12)
    assert p_alive(CDNOW, s) == pytest.approx(alive / (alive + dead), rel=1e-12)


@pytest.mark.parametrize(("x", "t_x", "big_t"), POINTS)
@pytest.mark.parametrize("t", [1.0, 39.0, 200.0])
def test_expected_purchases_agree_with_scipy_hyp2f1(
    x: int, t_x: float, big_t: float, t: float
) -> None:
    p = CDNOW
    z = t / (p.alpha + big_t + t)
    gauss = special.hyp2f1(p.r + x, p.b + x, p.a + p.b + x - 1, z)
    assert hyp2f1(p.r + x, p.b + x, p.a + p.b + x - 1, z) == pytest.approx(gauss, rel=1e-10)
    alive, dead = pieces(p, x, t_x, big_t)
    power = ((p.alpha + big_t) / (p.alpha + big_t + t)) ** (p.r + x)
    expected = (p.a + p.b + x - 1) / (p.a - 1) * (1 - power * gauss) * alive / (alive + dead)
    assert expected_purchases(p, Summary(x, t_x, big_t), t) == pytest.approx(expected, rel=1e-9)


def test_the_p_alive_published_for_the_example_customer() -> None:
    """P(alive) of the worked example (x=2, t_x=30.43, T=38.86) is 0.727 (3 places)."""
    assert round(p_alive(CDNOW, Summary(2, 30.43, 38.86)), 3) == 0.727


@pytest.mark.parametrize(
    ("a", "b", "c", "z"),
    [
        (30.2, 32.4, 33.2, 0.9999),
        (0.8, 3.0, 2.6, 0.999),
        (5.0, 1.5, 12.0, 0.999),
        (1.0, 1.0, 3.0, 0.0),
    ],
)
def test_hyp2f1_near_one_agrees_with_scipy(a: float, b: float, c: float, z: float) -> None:
    """Many purchases (a, b large against c) and a long horizon (z near 1): Euler's
    transformation converges where the plain series would need millions of terms."""
    assert hyp2f1(a, b, c, z) == pytest.approx(special.hyp2f1(a, b, c, z), rel=1e-9)


def test_an_expectation_whose_series_will_not_converge_reads_as_unknown() -> None:
    """A purchase rate's scale of a fraction of a second (alpha tiny) and a ten-year horizon put
    the series' argument within 1e-9 of 1: the risk says the expectation is unknown (null)
    instead of failing the read."""
    extreme = FittedVersion(1, Parameters(0.8, 1e-6, 0.6, 3.0), AT, 10, -1.0, 3650, "test", AT)
    found = risk(extreme, [AT])  # a first purchase on the fit's day: T = 0
    assert found is not None
    assert found["expected_purchases"] is None
    assert found["p_alive"] == "1.000000"


def test_a_degenerate_fit_whose_closed_form_has_no_value_reads_as_unknown() -> None:
    """A fit on a small base can give a + b < 1: for a one-time buyer (x = 0) the expectation's
    hypergeometric function then has c = a + b - 1 <= 0 and no value. The risk says unknown
    (null) with its P(alive) and never fails the read (it was a 500 on GET profile)."""
    degenerate = FittedVersion(1, Parameters(2271.1, 9805.5, 0.3, 0.4), AT, 10, -1.0, 30, "t", AT)
    found = risk(degenerate, [AT - timedelta(days=3)], AT)
    assert found is not None
    assert found["expected_purchases"] is None
    assert found["p_alive"] == "1.000000"  # x = 0: alive by the model's assumption
    with pytest.raises(ArithmeticError):
        expected_purchases(degenerate.parameters, Summary(0, 0, 3), 30)


def test_the_expectation_is_continuous_through_a_equal_to_one() -> None:
    """(a+b+x-1)/(a-1) [1 - …] is 0/0 at a = 1; the limit is taken from beside it."""
    s = Summary(2, 30.43, 38.86)
    at_one = expected_purchases(Parameters(0.243, 4.414, 1.0, 2.426), s, 39)
    near = [expected_purchases(Parameters(0.243, 4.414, a, 2.426), s, 39) for a in (0.999, 1.001)]
    assert min(near) <= at_one <= max(near)


def test_a_customer_without_repeat_purchases_is_alive() -> None:
    assert p_alive(CDNOW, Summary(0, 0, 500)) == 1.0
    assert alive_until(CDNOW, 0, 0, 0.5) is None


@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.9])
@pytest.mark.parametrize(("x", "t_x"), [(1, 2.0), (2, 30.43), (12, 40.0)])
def test_alive_until_is_where_p_alive_crosses_the_threshold(
    x: int, t_x: float, threshold: float
) -> None:
    crossing = alive_until(CDNOW, x, t_x, threshold)
    assert crossing is not None
    if crossing > t_x:
        assert p_alive(CDNOW, Summary(x, t_x, crossing)) == pytest.approx(threshold, rel=1e-9)
        assert p_alive(CDNOW, Summary(x, t_x, crossing * 1.01)) < threshold
    else:  # already below at the last purchase
        assert p_alive(CDNOW, Summary(x, t_x, t_x)) <= threshold


TRUE = Parameters(r=0.8, alpha=40.0, a=0.6, b=3.0)
TOLERANCE = {"r": 0.15, "alpha": 0.15, "a": 0.25, "b": 0.25}
"""Relative tolerance of the recovered parameters on 6,000 simulated customers (their standard
errors there are about 5 % for r and alpha and 10 % for a and b)."""


@pytest.mark.parametrize("seed", [7, 2026])
def test_the_fit_recovers_the_parameters_of_a_simulated_base(seed: int) -> None:
    base = simulate(6000, TRUE.r, TRUE.alpha, TRUE.a, TRUE.b, seed=seed, days=(180, 720))
    found = fit(Summary(c.frequency, c.recency, c.T) for c in base)
    assert found.customers == 6000
    for name, tolerance in TOLERANCE.items():
        true, estimate = getattr(TRUE, name), getattr(found.parameters, name)
        assert abs(estimate / true - 1) <= tolerance, (name, estimate, true)
    truth = sum(log_likelihood(TRUE, Summary(c.frequency, c.recency, c.T)) for c in base)
    assert found.log_likelihood >= truth  # the maximum is at least the truth's likelihood


def test_the_fit_recovers_them_from_whole_days_too() -> None:
    """As the application summarises: purchase times floored to days."""
    base = simulate(6000, TRUE.r, TRUE.alpha, TRUE.a, TRUE.b, seed=11, days=(180, 720))
    found = fit(
        Summary(len({int(t) for t in c.purchases}) - 1, int(c.recency), int(c.T)) for c in base
    )
    for name, tolerance in TOLERANCE.items():
        assert abs(getattr(found.parameters, name) / getattr(TRUE, name) - 1) <= tolerance


def test_a_base_without_repeat_purchases_cannot_be_fitted() -> None:
    with pytest.raises(FitError, match="bought again"):
        fit([Summary(0, 0, 30)] * 100)


# ------------------------------------------------------------------------- customers

AT = datetime(2026, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
MODEL = FittedVersion(3, TRUE, AT, 6000, -1.0, 90, "test", AT)


def test_a_summary_counts_utc_purchase_days_up_to_as_of() -> None:
    first = datetime(2026, 1, 1, 23, 30, tzinfo=UTC)
    bought = [first, first + timedelta(minutes=40), first + 10 * DAY, AT + DAY]
    # the second purchase is on the next UTC day; the last is after as_of
    assert summary_of(bought, AT) == Summary(2, 10, (AT.date() - first.date()).days)
    assert summary_of([AT + DAY], AT) is None


def test_a_customers_risk_is_as_of_the_fit_or_their_last_purchase() -> None:
    old = [AT - 200 * DAY, AT - 190 * DAY, AT - 180 * DAY]
    found = risk(MODEL, old)
    assert found is not None
    expected = p_alive(TRUE, Summary(2, 20, 200))
    assert found["p_alive"] == f"{expected:.6f}"
    assert found["model_version"] == 3
    assert found["horizon_days"] == 90
    assert found["expected_purchases"] == f"{expected_purchases(TRUE, Summary(2, 20, 200), 90):.6f}"
    back = risk(MODEL, [*old, AT + 5 * DAY])  # a purchase after the fit counts at once
    assert back is not None
    # evaluated right at that purchase: only the drop-out right after it is in doubt
    assert back["p_alive"] == f"{1 / (1 + TRUE.a / (TRUE.b + 3 - 1)):.6f}"
    assert back["as_of"].startswith((AT + 5 * DAY).date().isoformat())
    assert risk(MODEL, []) is None
