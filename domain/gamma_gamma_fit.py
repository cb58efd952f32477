"""Maximum-likelihood fit of the Gamma-Gamma spend model (:mod:`domain.gamma_gamma`) with scipy.

The ``models`` extra, like :mod:`domain.btyd_fit` (same approach, ADR 0009): the closed-form
log-likelihood vectorised with numpy over the distinct ``(x, m)`` pairs (weighted), optimised
on the log scale by L-BFGS-B and polished by Nelder-Mead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import gammaln

from domain.gamma_gamma import SpendParameters

Array = NDArray[np.float64]
MIN_REPEATERS = 10


class SpendFitError(ValueError):
    """The spend model cannot be fitted (too few repeat customers, no convergence)."""


@dataclass(frozen=True)
class SpendFit:
    """Fitted ``parameters``, the total ``log_likelihood`` and how many ``customers``."""

    parameters: SpendParameters
    log_likelihood: float
    customers: int


def _total(log_params: Array, x: Array, m: Array, weight: Array) -> float:
    p, q, gamma = np.exp(log_params)
    px = p * x
    each = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + m * x)
    )
    return float(np.sum(weight * each))


def fit(customers: Iterable[tuple[int, float]]) -> SpendFit:
    """The maximum-likelihood parameters of ``(frequency, monetary)`` pairs; pairs without a
    repeat transaction or with no spend are left out (the model needs both > 0).
    :class:`SpendFitError` with fewer than 10 such customers or when the optimiser fails."""
    counts = Counter((int(x), float(m)) for x, m in customers if x > 0 and m > 0)
    n = sum(counts.values())
    if n < MIN_REPEATERS:
        raise SpendFitError(
            f"the spend model needs at least {MIN_REPEATERS} customers who bought again "
            f"with a spend; there are {n}"
        )
    rows = np.array([(x, m, w) for (x, m), w in counts.items()], dtype=np.float64)
    x, m, weight = rows.T
    mean = float(np.average(m, weights=weight))

    def objective(theta: Array) -> float:
        value = -_total(theta, x, m, weight) / n
        return value if np.isfinite(value) else 1e300

    start = np.log(np.array([1.0, 2.0, mean]))
    first = minimize(objective, start, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 3)
    best = minimize(
        objective,
        first.x,
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20_000, "maxfev": 40_000},
    )
    chosen = best if best.fun <= first.fun else first
    if not np.isfinite(chosen.fun) or chosen.fun >= 1e299:
        raise SpendFitError(f"the optimiser found no finite likelihood: {chosen.message}")
    p, q, gamma = (float(v) for v in np.exp(chosen.x))
    return SpendFit(SpendParameters(p, q, gamma), _total(chosen.x, x, m, weight), n)
