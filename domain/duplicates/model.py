"""The match model: Fellegi-Sunter, the model splink and recordlinkage implement.

For each field and comparison level, ``m`` is the probability of that level when the two
records are the same person, ``u`` when they are two random people. The evidence of a level is
its match weight ``log2(m / u)`` (a Bayes factor in bits); a pair's weight is the prior log-odds
plus the weights of its fields (a missing field weighs 0), and its match probability is
``2**w / (1 + 2**w)``.

- ``u`` is estimated from the base itself, as splink's ``estimate_u_using_random_sampling``
  does: the levels of a seeded random sample of pairs (every pair of a small base), smoothed
  towards :data:`DEFAULT_U`
  (:data:`PRIOR_PAIRS`), so a level never seen among random pairs (two strangers with the same
  phone) keeps a finite weight and a small base gets sensible ones.
- ``m`` are the stated priors in :data:`M_PROBABILITIES` (how often a real duplicate keeps a
  field exactly, as an alias, with a typo, …).
- the prior is :data:`DUPLICATE_RATE` / (n - 1) per pair of a base of n customers (n at least
  :data:`MIN_POPULATION`): about one customer in twenty has a duplicate somewhere in the base.
- a first name that is neither the same, a typo, a nickname nor an initial is strong evidence
  of two people (``m`` 1e-6): a household shares a last name, an address and a landline, and
  those agreements are not independent of each other as the model assumes.

The probability is calibrated in the sense that matters for the threshold: on a generated base
with planted duplicates (tests/unit/test_duplicate_accuracy.py) pairs above
:data:`DEFAULT_THRESHOLD` are duplicates with precision ≥ 0.95 and recall ≥ 0.90.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.duplicates.compare import LEVELS, MISSING, compare
from domain.duplicates.records import MatchRecord

DEFAULT_THRESHOLD = 0.9
DUPLICATE_RATE = 0.05
U_SAMPLE_PAIRS = 100_000
MIN_POPULATION = 1_000
"""The prior is taken for a base of at least this many customers: in a base of two, one shared
phone and address would otherwise outweigh two different first names (a household)."""
PRIOR_PAIRS = 10_000
"""Weight of :data:`DEFAULT_U` in an estimate, in sampled pairs: a small base leans on it, a
large one on its own sample; a level never seen among random pairs keeps a finite weight."""
M_PROBABILITIES: dict[str, dict[str, float]] = {
    "name": {
        "exact": 0.55,
        "reordered": 0.05,
        "nickname": 0.08,
        "typo": 0.22,
        "initial": 0.04,
        "same_last_other_first": 1e-6,
        "other": 1e-4,
    },
    "email": {"exact": 0.5, "alias": 0.15, "typo": 0.05, "different": 0.3},
    "phone": {"exact": 0.75, "typo": 0.03, "different": 0.22},
    "address": {"exact": 0.55, "similar": 0.15, "same_city": 0.15, "different": 0.15},
    "external_id": {"same_id": 0.95, "conflict": 0.05},
}
# Typical u of a consumer base (what a scan of a 20,000-customer base estimates); used until a
# scan has estimated the base's own (MatchModel.to_json / from_json keep them).
DEFAULT_U: dict[str, dict[str, float]] = {
    "name": {
        "exact": 5e-5,
        "reordered": 1e-5,
        "nickname": 1e-4,
        "typo": 1e-3,
        "initial": 1e-5,
        "same_last_other_first": 2e-3,
        "other": 0.996,
    },
    "email": {"exact": 1e-5, "alias": 1e-5, "typo": 1e-5, "different": 0.99997},
    "phone": {"exact": 5e-5, "typo": 1e-4, "different": 0.99985},
    "address": {"exact": 1e-4, "similar": 1e-3, "same_city": 0.05, "different": 0.9489},
    "external_id": {"same_id": 1e-5, "conflict": 0.99999},
}


@dataclass(frozen=True, slots=True)
class Match:
    """A scored pair: ``probability`` in [0, 1], ``weight`` in bits, and per field
    ``evidence[field] = {"level": str, "weight": float}`` (bits, 0 when missing)."""

    probability: float
    weight: float
    evidence: dict[str, dict[str, Any]]


def _prior_bits(population: int) -> float:
    return math.log2(DUPLICATE_RATE / max(population - 1, MIN_POPULATION))


def _pairs(n: int, rng: random.Random) -> Iterator[tuple[int, int]]:
    """Every pair of ``n`` records when there are at most :data:`U_SAMPLE_PAIRS` (the same
    records give the same model in any order), else that many drawn at random."""
    if n * (n - 1) // 2 <= U_SAMPLE_PAIRS:
        yield from itertools.combinations(range(n), 2)
        return
    for _ in range(U_SAMPLE_PAIRS):
        i, j = rng.randrange(n), rng.randrange(n - 1)
        yield i, j + (j >= i)


@dataclass(frozen=True)
class MatchModel:
    """``u[field][level]`` and the base size ``population`` the prior is taken from."""

    u: Mapping[str, Mapping[str, float]]
    population: int
    weights: dict[str, dict[str, float]] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        weights = {
            name: {
                level: math.log2(M_PROBABILITIES[name][level] / self.u[name][level])
                for level in levels
            }
            for name, levels in LEVELS.items()
        }
        for levels in weights.values():
            levels[MISSING] = 0.0
        object.__setattr__(self, "weights", weights)

    @classmethod
    def default(cls, population: int) -> MatchModel:
        return cls(DEFAULT_U, population)

    @classmethod
    def estimate(cls, records: Sequence[MatchRecord], seed: int = 0) -> MatchModel:
        """``u`` from the pairs of ``records`` (:func:`_pairs`; deterministic: the same records
        in the same order give the same model, in any order when the base is small)."""
        if len(records) < 2:
            return cls.default(len(records))
        rng = random.Random(seed)
        counts = {name: dict.fromkeys(levels, 0) for name, levels in LEVELS.items()}
        sampled = dict.fromkeys(LEVELS, 0)
        n = len(records)
        for i, j in _pairs(n, rng):
            for name, level in compare(records[i], records[j]).items():
                if level != MISSING:
                    counts[name][level] += 1
                    sampled[name] += 1
        u = {
            name: {
                level: (count + PRIOR_PAIRS * DEFAULT_U[name][level])
                / (sampled[name] + PRIOR_PAIRS)
                for level, count in counts[name].items()
            }
            for name in LEVELS
        }
        return cls(u, n)

    def to_json(self) -> dict[str, Any]:
        return {
            "u": {name: dict(levels) for name, levels in self.u.items()},
            "population": self.population,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MatchModel:
        return cls(data["u"], int(data["population"]))

    def with_population(self, population: int) -> MatchModel:
        return MatchModel(self.u, population)

    def score(self, a: MatchRecord, b: MatchRecord) -> Match:
        """The match of ``a`` and ``b``."""
        levels = compare(a, b)
        evidence = {
            name: {"level": level, "weight": round(self.weights[name][level], 2)}
            for name, level in levels.items()
        }
        weight = _prior_bits(self.population) + sum(
            self.weights[name][level] for name, level in levels.items()
        )
        probability = 1.0 / (1.0 + 2.0 ** (-weight)) if weight > -1000 else 0.0
        return Match(round(probability, 6), round(weight, 3), evidence)
