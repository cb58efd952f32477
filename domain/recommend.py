"""Item-to-item recommendations from co-purchase counts, scored by cosine (pure: no I/O).

The model (ADR 0012) counts, over the *contributing* customers (live, with profiling consent),
``n(i)`` = customers who bought item ``i`` and ``n(i, j)`` = customers who bought both ``i``
and ``j`` (``i != j``; a customer's "basket" is every order they hold, refunds removed, so
what a customer bought across orders counts). Items are purchase line items' ``sku``.

* similarity: ``cos(i, j) = n(i, j) / sqrt(n(i) n(j))`` (cosine of the items' binary
  customer vectors; symmetric, in (0, 1]);
* a customer who owns the items ``S`` gets, for every item ``j`` not in ``S`` bought together
  with one of them, ``score(j) = sum over i in S of cos(i, j)`` (summed in ``i`` order, so
  the float is the same whoever computes it), ranked by score descending, then ``sku``;
* evidence: the owned items behind a score, the strongest first (at most
  :data:`EVIDENCE` of them), each with ``n(i, j)`` and ``cos(i, j)``.

Everything is a count over customers, so the counts change by what one customer's basket
change adds and removes (:func:`pair_deltas`), in any order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from itertools import permutations
from typing import Any

EVIDENCE = 3
MAX_LIMIT = 100


@dataclass(frozen=True)
class Evidence:
    """An owned item ``because`` behind a recommendation: ``together`` customers bought both,
    ``cosine`` their similarity."""

    because: str
    together: int
    cosine: float


@dataclass(frozen=True)
class Recommendation:
    """An item not yet bought, its ``score`` and the strongest :class:`Evidence`."""

    sku: str
    score: float
    evidence: tuple[Evidence, ...]

    def view(self) -> dict[str, Any]:
        """``{sku, score, evidence: [{because, together, cosine}]}`` (floats, 6 places)."""
        return {
            "sku": self.sku,
            "score": round(self.score, 6),
            "evidence": [
                {"because": e.because, "together": e.together, "cosine": round(e.cosine, 6)}
                for e in self.evidence
            ],
        }


def item_deltas(before: Collection[str], after: Collection[str]) -> Counter[str]:
    """How ``n(i)`` changes when one customer's contributed items go from ``before`` to
    ``after``."""
    deltas: Counter[str] = Counter()
    deltas.update(set(after) - set(before))
    deltas.subtract(set(before) - set(after))
    return deltas


def pair_deltas(before: Collection[str], after: Collection[str]) -> Counter[tuple[str, str]]:
    """How ``n(i, j)`` (both orders ``(i, j)`` and ``(j, i)``) changes for the same change."""
    old, new = set(before), set(after)
    deltas: Counter[tuple[str, str]] = Counter()
    deltas.update(p for p in permutations(sorted(new), 2) if not (p[0] in old and p[1] in old))
    deltas.subtract(p for p in permutations(sorted(old), 2) if not (p[0] in new and p[1] in new))
    return deltas


def cosine(together: int, first: int, second: int) -> float:
    """``together / sqrt(first * second)``."""
    return together / math.sqrt(first * second)


def recommend(
    owned: Iterable[str],
    pairs: Iterable[tuple[str, str, int]],
    counts: Mapping[str, int],
    limit: int,
) -> list[Recommendation]:
    """The top ``limit`` items for a customer owning ``owned``, from the ``(i, j, n(i, j))``
    rows with ``i`` owned (others are ignored) and ``counts`` = ``n`` of every item named."""
    mine = set(owned)
    found: dict[str, list[Evidence]] = {}
    for i, j, together in sorted(pairs):
        if i in mine and j not in mine and together > 0:
            found.setdefault(j, []).append(
                Evidence(i, together, cosine(together, counts[i], counts[j]))
            )
    ranked = []
    for sku, behind in found.items():
        score = math.fsum(e.cosine for e in behind)
        strongest = sorted(behind, key=lambda e: (-e.cosine, e.because))[:EVIDENCE]
        ranked.append(Recommendation(sku, score, tuple(strongest)))
    ranked.sort(key=lambda r: (-r.score, r.sku))
    return ranked[:limit]


def rank_all(baskets: Mapping[str, Collection[str]], limit: int) -> dict[str, list[str]]:
    """The top ``limit`` skus (by :func:`recommend`) of every customer with a non-empty basket,
    when ``baskets`` (customer → the skus they hold) are all the contributing customers': the
    counts are computed from ``baskets`` themselves. Customers nothing is recommended to are
    left out."""
    counts: Counter[str] = Counter()
    together: Counter[tuple[str, str]] = Counter()
    for basket in baskets.values():
        counts.update(set(basket))
        together.update(permutations(sorted(set(basket)), 2))
    paired: dict[str, list[tuple[str, str, int]]] = {}
    for (i, j), n in together.items():
        paired.setdefault(i, []).append((i, j, n))
    ranked = {}
    for customer, basket in sorted(baskets.items()):
        pairs = [row for sku in set(basket) for row in paired.get(sku, ())]
        top = [r.sku for r in recommend(basket, pairs, counts, limit)]
        if top:
            ranked[customer] = top
    return ranked
