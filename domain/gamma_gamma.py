"""Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV: Using Iso-Value Curves for
Customer Base Analysis", JMR 42(4); Fader & Hardie's note "The Gamma-Gamma Model of Monetary
Value", 2013): the published closed forms in pure Python (``math`` only).

The model: a customer's transaction values are ``Gamma(p, nu)`` (shape ``p``, rate ``nu``), so
their mean spend is ``p / nu``; across customers ``nu ~ Gamma(q, gamma)``. Spend is independent
of the purchase process (BG/NBD, :mod:`domain.btyd`), so value = expected purchases times
expected spend. A customer is summarised by ``x`` repeat transactions (> 0) and their mean
value ``m`` (the RFM ``monetary``: mean spend of the repeat purchase days).

* log-likelihood of ``(x, m)`` (the density of the mean ``m``):
  ``lnG(px+q) - lnG(px) - lnG(q) + q ln gamma + (px-1) ln m + px ln x - (px+q) ln(gamma + m x)``;
* the population's mean spend: ``p gamma / (q - 1)`` (``q > 1``);
* a customer's expected mean spend:
  ``E[M | x, m] = p (gamma + m x) / (p x + q - 1)``, a weighted mean of the population's mean
  and the customer's own ``m`` (weight ``p x / (p x + q - 1)`` on theirs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SpendParameters:
    """Gamma-Gamma parameters, all > 0 (``q > 1`` for the means to exist); ``gamma`` is in the
    currency's unit."""

    p: float
    q: float
    gamma: float

    def __post_init__(self) -> None:
        for name in ("p", "q", "gamma"):
            value = getattr(self, name)
            if not (isinstance(value, float | int) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, not {value!r}")

    def mean(self) -> float | None:
        """The population's mean spend per transaction, or None when ``q <= 1`` (infinite)."""
        return self.p * self.gamma / (self.q - 1) if self.q > 1 else None


def log_likelihood(s: SpendParameters, frequency: int, monetary: float) -> float:
    """One customer's log-likelihood (``frequency`` > 0 repeat transactions of mean
    ``monetary`` > 0)."""
    if frequency <= 0 or monetary <= 0:
        raise ValueError("the spend model needs frequency > 0 and monetary > 0")
    px = s.p * frequency
    return (
        math.lgamma(px + s.q)
        - math.lgamma(px)
        - math.lgamma(s.q)
        + s.q * math.log(s.gamma)
        + (px - 1) * math.log(monetary)
        + px * math.log(frequency)
        - (px + s.q) * math.log(s.gamma + monetary * frequency)
    )


def expected_spend(s: SpendParameters, frequency: int, monetary: float) -> float | None:
    """A customer's expected mean spend per transaction given ``frequency`` repeat
    transactions of mean ``monetary`` (without repeat transactions: the population's mean);
    None when ``q <= 1``."""
    if s.q <= 1:
        return None
    if frequency <= 0:
        return s.mean()
    return s.p * (s.gamma + monetary * frequency) / (s.p * frequency + s.q - 1)
