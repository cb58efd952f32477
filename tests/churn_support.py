"""A customer base simulated from the BG/NBD process itself (Fader, Hardie & Lee 2005, section
2), seeded: while alive a customer buys as a Poisson process of rate ``lambda``; after each
purchase they drop out with probability ``p``; ``lambda ~ Gamma(r, rate alpha)`` and
``p ~ Beta(a, b)`` across customers. Written from the model's assumptions, not from the
estimator under test."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Simulated:
    """One customer: purchase times (days since their first purchase, the first is 0) within
    an observation of ``T`` days, and whether they were still alive at ``T`` (the truth the
    model's P(alive) estimates)."""

    purchases: tuple[float, ...]
    T: float
    alive: bool = True

    @property
    def frequency(self) -> int:
        return len(self.purchases) - 1

    @property
    def recency(self) -> float:
        return self.purchases[-1]


def simulate(
    n: int, r: float, alpha: float, a: float, b: float, *, seed: int, days: tuple[float, float]
) -> list[Simulated]:
    """``n`` customers observed for a uniform number of days in ``days`` after their first
    purchase."""
    rng = random.Random(seed)
    base = []
    for _ in range(n):
        rate = rng.gammavariate(r, 1 / alpha)
        drop = rng.betavariate(a, b)
        observed = rng.uniform(*days)
        times, alive = [0.0], True
        while (nxt := times[-1] + rng.expovariate(rate)) <= observed:
            times.append(nxt)
            if rng.random() < drop:  # drops out right after a repeat purchase
                alive = False
                break
        base.append(Simulated(tuple(times), observed, alive))
    return base
