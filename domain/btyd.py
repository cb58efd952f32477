"""BG/NBD ("beta-geometric / negative binomial distribution", Fader, Hardie & Lee 2005,
"Counting Your Customers the Easy Way", Marketing Science 24(2)): the published closed forms,
in pure Python (``math`` only, so reading a churn risk needs no numerical library).

The model: while alive, a customer buys as a Poisson process of rate ``lambda``; after each
purchase they drop out with probability ``p``. Across customers ``lambda ~ Gamma(r, alpha)``
(shape ``r``, rate ``alpha``) and ``p ~ Beta(a, b)``. A customer's history is summarised by
``(x, t_x, T)``: ``x`` repeat purchases (the first purchase is time 0), the last at ``t_x``,
observed until ``T`` (``0 <= t_x <= T``), all in one time unit (days here; ``alpha`` is then in
days too). Formulas (paper's equations 6, and those for ``P(alive)`` and the conditional
expectation in its section 4 / Hardie's notes):

* log-likelihood ``ln L = ln A1 + ln A2 + ln(exp(ln A3) + [x > 0] exp(ln A4))`` with
  ``ln A1 = lnG(r+x) - lnG(r) + r ln alpha``,
  ``ln A2 = lnG(a+b) + lnG(b+x) - lnG(b) - lnG(a+b+x)``,
  ``ln A3 = -(r+x) ln(alpha+T)``,
  ``ln A4 = ln a - ln(b+x-1) - (r+x) ln(alpha+t_x)``;
* ``P(alive | x, t_x, T) = 1 / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))``
  (1 for ``x = 0``: in BG/NBD a customer can only drop out right after a purchase);
* expected purchases in the next ``t``:
  ``E[Y(t) | x, t_x, T] = (a+b+x-1)/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x)
  2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))] * P(alive)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

NEAR_ONE = 1e-7
HYP2F1_TERMS = 200_000
"""Bound on the Gauss series' terms (its argument is < 1; near 1 it converges slowly)."""


@dataclass(frozen=True)
class Parameters:
    """BG/NBD parameters, all > 0: ``r``, ``alpha`` (purchase rate's gamma shape and rate, per
    day) and ``a``, ``b`` (drop-out probability's beta shape)."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "a", "b"):
            value = getattr(self, name)
            if not (isinstance(value, float | int) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, not {value!r}")


@dataclass(frozen=True)
class Summary:
    """One customer's ``(x, t_x, T)``: ``frequency`` repeat purchases, ``recency`` the time of
    the last one since the first, ``T`` the time observed since the first (days)."""

    frequency: int
    recency: float
    T: float

    def __post_init__(self) -> None:
        if self.frequency < 0 or not 0 <= self.recency <= self.T:
            raise ValueError(f"need frequency >= 0 and 0 <= recency <= T: {self}")
        if self.frequency == 0 and self.recency != 0:
            raise ValueError(f"recency is 0 without repeat purchases: {self}")


@dataclass(frozen=True)
class Fit:
    """Fitted ``parameters``, the base's total ``log_likelihood`` at them and its size."""

    parameters: Parameters
    log_likelihood: float
    customers: int


def log_likelihood(p: Parameters, s: Summary) -> float:
    """One customer's log-likelihood (module docstring)."""
    x = s.frequency
    ln_a1 = math.lgamma(p.r + x) - math.lgamma(p.r) + p.r * math.log(p.alpha)
    ln_a2 = (
        math.lgamma(p.a + p.b)
        + math.lgamma(p.b + x)
        - math.lgamma(p.b)
        - math.lgamma(p.a + p.b + x)
    )
    ln_a3 = -(p.r + x) * math.log(p.alpha + s.T)
    if x == 0:
        return ln_a1 + ln_a2 + ln_a3
    ln_a4 = math.log(p.a) - math.log(p.b + x - 1) - (p.r + x) * math.log(p.alpha + s.recency)
    top = max(ln_a3, ln_a4)
    return ln_a1 + ln_a2 + top + math.log(math.exp(ln_a3 - top) + math.exp(ln_a4 - top))


def _odds_dead(p: Parameters, s: Summary) -> float:
    """``P(dead) / P(alive)`` given the history (0 without repeat purchases)."""
    x = s.frequency
    if x == 0:
        return 0.0
    log_odds = (
        math.log(p.a)
        - math.log(p.b + x - 1)
        + (p.r + x) * (math.log(p.alpha + s.T) - math.log(p.alpha + s.recency))
    )
    return math.exp(min(log_odds, 700.0))


def p_alive(p: Parameters, s: Summary) -> float:
    """Probability that the customer is still alive at ``T``, in [0, 1]."""
    return 1.0 / (1.0 + _odds_dead(p, s))


def expected_purchases(p: Parameters, s: Summary, t: float) -> float:
    """Expected purchases in the ``t`` days after ``T`` (``t >= 0``). :class:`ArithmeticError`
    where the closed form cannot be evaluated: ``a + b + x <= 1`` (its hypergeometric
    function's ``c``; a degenerate fit on a small base) or a series that does not converge."""
    if t < 0:
        raise ValueError("t must be >= 0")
    if t == 0:
        return 0.0
    if abs(p.a - 1) < NEAR_ONE:  # a removable 0/0 at a = 1: evaluate just beside it
        p = replace(p, a=1 + NEAR_ONE)
    x = s.frequency
    c = p.a + p.b + x - 1
    if c <= 0:
        raise ArithmeticError(f"the expectation needs a + b + x > 1, not {c + 1:g}")
    z = t / (p.alpha + s.T + t)
    power = math.exp((p.r + x) * (math.log(p.alpha + s.T) - math.log(p.alpha + s.T + t)))
    bracket = 1.0 - power * hyp2f1(p.r + x, p.b + x, c, z)
    return (c / (p.a - 1)) * bracket * p_alive(p, s)


def hyp2f1(a: float, b: float, c: float, z: float) -> float:
    """Gauss's hypergeometric function for ``0 <= z < 1`` and ``c > 0`` (the arguments the
    expectation needs), relative precision about 1e-13: its series, or Euler's transformation
    ``(1-z)^(c-a-b) 2F1(c-a, c-b; c; z)`` when that series' terms fall faster (near ``z = 1``
    the direct terms decay like ``k^(a+b-c-1) z^k``, the transformed ones like
    ``k^(c-a-b-1) z^k``). :class:`ArithmeticError` if neither converges in
    :data:`HYP2F1_TERMS` terms."""
    if not 0 <= z < 1 or c <= 0:
        raise ValueError("hyp2f1 here needs 0 <= z < 1 and c > 0")
    if c - a - b < 0:
        return math.exp((c - a - b) * math.log1p(-z)) * _series(c - a, c - b, c, z)
    return _series(a, b, c, z)


def _series(a: float, b: float, c: float, z: float) -> float:
    term = total = 1.0
    for k in range(HYP2F1_TERMS):
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total += term
        if abs(term) <= 1e-15 * abs(total):
            return total
    raise ArithmeticError(f"hyp2f1({a}, {b}; {c}; {z}) did not converge")


def alive_until(p: Parameters, frequency: int, recency: float, threshold: float) -> float | None:
    """The ``T`` (days since the first purchase) at which ``P(alive)`` of a customer with
    ``frequency`` repeat purchases, the last at ``recency``, falls to ``threshold`` (in (0, 1))
    if they buy nothing more; None when it never does (no repeat purchase: P(alive) stays 1).
    ``P(alive)`` decreases in ``T``, so it is below ``threshold`` exactly after this ``T``."""
    if not 0 < threshold < 1:
        raise ValueError("threshold must be in (0, 1)")
    x = frequency
    if x == 0:
        return None
    # 1 / (1 + k ((alpha+T)/(alpha+t_x))^(r+x)) = threshold, k = a / (b+x-1)
    odds = (1 / threshold - 1) * (p.b + x - 1) / p.a
    ratio = math.exp(math.log(odds) / (p.r + x))
    return max((p.alpha + recency) * ratio - p.alpha, recency)
