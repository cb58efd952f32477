"""The Gamma-Gamma spend model: its closed forms, and the fit recovering known parameters from
a base simulated from the model itself (the CDNOW values of Fader, Hardie & Lee 2005)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from domain.gamma_gamma import SpendParameters, expected_spend, log_likelihood
from domain.gamma_gamma_fit import SpendFitError, fit

CDNOW = SpendParameters(p=6.25, q=3.74, gamma=15.44)
CHI2_3_999 = 16.266  # the 99.9 % quantile of chi-squared with 3 degrees of freedom


def simulate(truth: SpendParameters, customers: int, seed: int) -> list[tuple[int, float]]:
    """``(x, m)``: each customer's ``nu ~ Gamma(q, gamma)``, ``x`` repeat transactions (1 +
    a Poisson count of a gamma-distributed rate, so x varies widely), each worth
    ``Gamma(p, nu)``, their mean rounded to cents."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(truth.q, 1 / truth.gamma, customers)
    x = 1 + rng.poisson(rng.gamma(1.0, 6.0, customers))
    means = [rng.gamma(truth.p, 1 / n, k).mean() for n, k in zip(nu, x, strict=True)]
    return [(int(k), round(float(m), 2)) for k, m in zip(x, means, strict=True)]


def test_the_likelihood_is_the_density_of_the_mean_spend() -> None:
    """Integrating the customer's mean over nu's gamma mixture, numerically."""
    p, x, m = CDNOW, 3, 28.5

    def joint(nu: float) -> float:
        mean_density = stats.gamma.pdf(m, a=p.p * x, scale=1 / (nu * x))
        return float(mean_density * stats.gamma.pdf(nu, a=p.q, scale=1 / p.gamma))

    numeric, _ = integrate.quad(joint, 0, np.inf, limit=200)
    assert math.exp(log_likelihood(p, x, m)) == pytest.approx(numeric, rel=1e-7)


def test_expected_spend_is_the_posterior_mean() -> None:
    """nu | x, m is Gamma(px + q, gamma + m x): E[p / nu] by numerical integration."""
    p, x, m = CDNOW, 4, 12.0
    posterior = stats.gamma(a=p.p * x + p.q, scale=1 / (p.gamma + m * x))
    numeric, _ = integrate.quad(lambda nu: p.p / nu * posterior.pdf(nu), 0, np.inf, limit=200)
    assert expected_spend(p, x, m) == pytest.approx(numeric, rel=1e-7)
    assert expected_spend(p, 0, 0.0) == CDNOW.mean() == pytest.approx(6.25 * 15.44 / 2.74)
    assert expected_spend(SpendParameters(1.0, 0.5, 1.0), 3, 2.0) is None


def test_the_fit_recovers_known_parameters() -> None:
    """Stated tolerance, 40,000 customers: p and gamma within 12 %, q within 5 %, the mean
    spend p gamma / (q - 1) within 2 % (over 20 seeds the relative errors' standard deviations
    were 2.6 %, 0.7 %, 2.8 %: these are more than 4 of them); and the fit is the maximum (at
    least the likelihood of the truth, not significantly above it: 2 ΔlnL < chi2(3) at
    99.9 %)."""
    base = simulate(CDNOW, 40_000, seed=20)
    found = fit(base)
    got = found.parameters
    assert found.customers == len(base)
    assert got.p == pytest.approx(CDNOW.p, rel=0.12)
    assert got.q == pytest.approx(CDNOW.q, rel=0.05)
    assert got.gamma == pytest.approx(CDNOW.gamma, rel=0.12)
    assert got.mean() == pytest.approx(CDNOW.mean(), rel=0.02)
    at_truth = math.fsum(log_likelihood(CDNOW, x, m) for x, m in base)
    at_fit = math.fsum(log_likelihood(got, x, m) for x, m in base)
    assert found.log_likelihood == pytest.approx(at_fit, rel=1e-9)
    assert 0 <= at_fit - at_truth < CHI2_3_999 / 2


def test_a_base_too_small_is_refused() -> None:
    with pytest.raises(SpendFitError, match="at least 10"):
        fit([(1, 5.0)] * 5 + [(0, 0.0)] * 50 + [(3, 0.0)] * 50)
