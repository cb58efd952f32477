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
from scipy.special import gammaln

from domain.btyd_fit import maximise_likelihood
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

    start = np.log(np.array([1.0, 2.0, mean]))
    found = maximise_likelihood(lambda theta: _total(theta, x, m, weight) / n, start)
    if isinstance(found, str):
        raise SpendFitError(found)
    p, q, gamma = (float(v) for v in np.exp(found))
    return SpendFit(SpendParameters(p, q, gamma), _total(found, x, m, weight), n)
