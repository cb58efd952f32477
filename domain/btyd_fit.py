"""Maximum-likelihood fit of BG/NBD (:mod:`domain.btyd`) with scipy's optimiser.

Needs the ``models`` extra (scipy, numpy): :mod:`commands.models` imports this module only when
a fit is asked for, so the rest of the application runs without them. The log-likelihood is
the same closed form as :func:`domain.btyd.log_likelihood`, vectorised over the distinct
``(x, t_x, T)`` triples of the base (weighted by how many customers share each: with times in
whole days most do). Parameters are optimised on the log scale (so they stay > 0) by
L-BFGS-B, then polished by Nelder-Mead from there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import gammaln

from domain.btyd import Fit, Parameters, Summary

Array = NDArray[np.float64]
MIN_CUSTOMERS = 10
MIN_REPEATERS = 2


class FitError(ValueError):
    """The base cannot be fitted (too few customers, no repeat purchases, no convergence)."""


def _total(log_params: Array, x: Array, t_x: Array, big_t: Array, weight: Array) -> float:
    r, alpha, a, b = np.exp(log_params)
    ln_a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    ln_a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    ln_a3 = -(r + x) * np.log(alpha + big_t)
    repeat = x > 0
    ln_a4 = np.where(
        repeat,
        np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    mixed = np.logaddexp(ln_a3, ln_a4)
    return float(np.sum(weight * (ln_a1 + ln_a2 + mixed)))


def fit(summaries: Iterable[Summary]) -> Fit:
    """The maximum-likelihood BG/NBD parameters of ``summaries`` (times in days), or
    :class:`FitError` when there are fewer than 10 customers or fewer than 2 with a repeat
    purchase (nothing to learn the drop-out from) or the optimiser fails."""
    counts = Counter((s.frequency, float(s.recency), float(s.T)) for s in summaries)
    customers = sum(counts.values())
    repeaters = sum(n for (x, _, _), n in counts.items() if x > 0)
    if customers < MIN_CUSTOMERS or repeaters < MIN_REPEATERS:
        raise FitError(
            f"a fit needs at least {MIN_CUSTOMERS} customers of whom {MIN_REPEATERS} bought "
            f"again; the base has {customers}, {repeaters} of whom bought again"
        )
    rows = np.array([(*key, n) for key, n in counts.items()], dtype=np.float64)
    x, t_x, big_t, weight = rows.T
    scale = max(float(big_t.max()), 1.0)  # alpha's start in the data's time unit

    start = np.log(np.array([1.0, scale / 10, 1.0, 1.0]))
    found = maximise_likelihood(
        lambda theta: _total(theta, x, t_x, big_t, weight) / customers, start
    )
    if isinstance(found, str):
        raise FitError(found)
    r, alpha, a, b = (float(v) for v in np.exp(found))
    return Fit(Parameters(r, alpha, a, b), _total(found, x, t_x, big_t, weight), customers)


def maximise_likelihood(total: Callable[[Array], float], start: Array) -> Array | str:
    """The log-parameters (each within e^±12) that maximise ``total``, a log-likelihood (best
    per customer, so the tolerances do not depend on the base's size), from ``start``:
    L-BFGS-B, then Nelder-Mead from its answer, the better of the two; or why no finite
    likelihood was found (a message). Shared by the BG/NBD and Gamma-Gamma fits."""

    def objective(theta: Array) -> float:
        value = -total(theta)
        return value if np.isfinite(value) else 1e300

    first = minimize(objective, start, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * len(start))
    best = minimize(
        objective,
        first.x,
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20_000, "maxfev": 40_000},
    )
    chosen = best if best.fun <= first.fun else first
    if not np.isfinite(chosen.fun) or chosen.fun >= 1e299:
        return f"the optimiser found no finite likelihood: {chosen.message}"
    return np.asarray(chosen.x, dtype=np.float64)
