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

Category fallback (:func:`by_category`): a customer whose items have no co-purchase evidence
(nothing is recommended above) gets the items most bought in the categories of the items they
hold (a line item's ``category`` with its ``sku``): ``n_c(j)`` = contributing customers who
bought ``j`` as an item of category ``c``, ``n_c`` = those who bought anything of ``c``;
``score(j) = max over their categories c of n_c(j) / n_c`` (the share of the category's buyers
who bought ``j``), ranked by score, then ``sku``; evidence: the categories behind it.

Everything is a count over customers, so the counts change by what one customer's basket
change adds and removes (:func:`pair_deltas`), in any order.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from itertools import permutations
from typing import Any, TypeVar

EVIDENCE = 3
Key = TypeVar("Key", str, tuple[str, str])
MAX_LIMIT = 100


@dataclass(frozen=True)
class Evidence:
    """An owned item ``because`` behind a recommendation: ``together`` customers bought both,
    ``cosine`` their similarity."""

    because: str
    together: int
    cosine: float


@dataclass(frozen=True)
class Popular:
    """A category of the customer's items behind a fallback: ``customers`` of the category's
    buyers bought the item, ``share`` of them."""

    category: str
    customers: int
    share: float


@dataclass(frozen=True)
class Recommendation:
    """An item not yet bought, its ``score`` and the strongest :class:`Evidence` (or, for a
    category fallback, :class:`Popular` categories)."""

    sku: str
    score: float
    evidence: tuple[Evidence, ...] | tuple[Popular, ...]

    def view(self) -> dict[str, Any]:
        """``{sku, score, evidence: [{because, together, cosine}]}``, or for a category
        fallback ``evidence: [{category, customers, share}]`` (floats, 6 places)."""
        return {
            "sku": self.sku,
            "score": round(self.score, 6),
            "evidence": [_view(e) for e in self.evidence],
        }


def _view(e: Evidence | Popular) -> dict[str, Any]:
    if isinstance(e, Popular):
        return {"category": e.category, "customers": e.customers, "share": round(e.share, 6)}
    return {"because": e.because, "together": e.together, "cosine": round(e.cosine, 6)}


def item_deltas(before: Collection[Key], after: Collection[Key]) -> Counter[Key]:
    """How ``n(i)`` changes when one customer's contributed items go from ``before`` to
    ``after`` (also ``n_c`` and ``n_c(j)``, keyed by category and by ``(category, sku)``)."""
    deltas: Counter[Key] = Counter()
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


def by_category(
    owned: Collection[str],
    rows: Iterable[tuple[str, str, int]],
    sizes: Mapping[str, int],
    limit: int,
) -> list[Recommendation]:
    """The category fallback: the top ``limit`` items not in ``owned`` from the ``(c, j,
    n_c(j))`` rows of the customer's categories, ``sizes`` = ``n_c`` of each."""
    mine = set(owned)
    found: dict[str, list[Popular]] = {}
    for category, sku, customers in sorted(rows):
        if sku not in mine and customers > 0:
            share = customers / sizes[category]
            found.setdefault(sku, []).append(Popular(category, customers, share))
    ranked = [
        Recommendation(
            sku, max(p.share for p in behind), tuple(sorted(behind, key=_strongest))[:EVIDENCE]
        )
        for sku, behind in found.items()
    ]
    ranked.sort(key=lambda r: (-r.score, r.sku))
    return ranked[:limit]


def _strongest(p: Popular) -> tuple[float, str]:
    return (-p.share, p.category)


def labels(items: Iterable[tuple[str, str | None]]) -> frozenset[str]:
    """The category labels of ``(sku, category)`` items (those without one left out)."""
    return frozenset(c for _, c in items if c is not None)


def rank_all(
    baskets: Mapping[str, Collection[tuple[str, str | None]]], limit: int
) -> dict[str, list[str]]:
    """The top ``limit`` skus of every customer with a non-empty basket, as a customer's own
    answer ranks them (:func:`recommend`, else :func:`by_category`), when ``baskets``
    (customer → the ``(sku, category)`` items they hold) are all the contributing customers':
    the counts are computed from ``baskets`` themselves. Customers nothing is recommended to
    are left out. Each item's cosines are computed once, and equal baskets are ranked once."""
    counts: Counter[str] = Counter()
    together: Counter[tuple[str, str]] = Counter()
    in_category: Counter[tuple[str, str]] = Counter()
    sizes: Counter[str] = Counter()
    for basket in baskets.values():
        skus = sorted({sku for sku, _ in basket})
        counts.update(skus)
        together.update(permutations(skus, 2))
        in_category.update({(c, sku) for sku, c in basket if c is not None})
        sizes.update(labels(basket))
    similar: dict[str, list[tuple[str, float]]] = {}
    for (i, j), n in together.items():
        similar.setdefault(i, []).append((j, cosine(n, counts[i], counts[j])))
    popular: dict[str, list[tuple[str, str, int]]] = {}
    for (c, sku), n in in_category.items():
        popular.setdefault(c, []).append((c, sku, n))
    ranked: dict[str, list[str]] = {}
    done: dict[frozenset[tuple[str, str | None]], list[str]] = {}
    for customer, basket in sorted(baskets.items()):
        key = frozenset(basket)
        if key not in done:
            done[key] = _top(key, similar, popular, sizes, limit)
        if done[key]:
            ranked[customer] = done[key]
    return ranked


def _top(
    basket: frozenset[tuple[str, str | None]],
    similar: Mapping[str, list[tuple[str, float]]],
    popular: Mapping[str, list[tuple[str, str, int]]],
    sizes: Mapping[str, int],
    limit: int,
) -> list[str]:
    """:func:`recommend` (else :func:`by_category`) for one basket, skus only: the same sums
    (``fsum`` is exact whatever the order) and the same ordering."""
    owned = {sku for sku, _ in basket}
    behind: dict[str, list[float]] = {}
    for i in owned:
        for j, value in similar.get(i, ()):
            if j not in owned:
                behind.setdefault(j, []).append(value)
    if behind:
        best = heapq.nsmallest(limit, ((-math.fsum(v), j) for j, v in behind.items()))
        return [j for _, j in best]
    rows = [row for c in labels(basket) for row in popular[c]]
    return [r.sku for r in by_category(owned, rows, sizes, limit)]
