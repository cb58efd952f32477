"""``rank_all`` (every customer's top k at once, for the segment field) ranks exactly as one
customer's answer does: :func:`recommend` from the counts, else the category fallback."""

from __future__ import annotations

import random
from collections import Counter
from itertools import permutations

from domain.recommend import by_category, rank_all, recommend

Basket = frozenset[tuple[str, str | None]]


def one_by_one(baskets: dict[str, Basket], limit: int) -> dict[str, list[str]]:
    """What the route answers each customer, from counts made here."""
    n: Counter[str] = Counter()
    both: Counter[tuple[str, str]] = Counter()
    in_category: Counter[tuple[str, str]] = Counter()
    buyers: Counter[str] = Counter()
    for basket in baskets.values():
        skus = {s for s, _ in basket}
        n.update(skus)
        both.update(permutations(skus, 2))
        in_category.update({(c, s) for s, c in basket if c})
        buyers.update({c for _, c in basket if c})
    found = {}
    for customer, basket in baskets.items():
        owned = {s for s, _ in basket}
        pairs = [(i, j, k) for (i, j), k in both.items() if i in owned]
        top = recommend(owned, pairs, n, limit)
        if not top:
            mine = {c for _, c in basket if c}
            rows = [(c, s, k) for (c, s), k in in_category.items() if c in mine]
            top = by_category(owned, rows, buyers, limit)
        if top:
            found[customer] = [r.sku for r in top]
    return found


def test_rank_all_equals_the_answer_of_each_customer() -> None:
    rng = random.Random(12)
    skus = [f"s{k}" for k in range(40)]
    for _ in range(20):
        baskets: dict[str, Basket] = {}
        for customer in range(rng.randrange(1, 60)):
            picked = rng.sample(skus, rng.randrange(1, 5))
            baskets[f"c{customer}"] = frozenset(
                (s, rng.choice(["a", "b", "c", None])) for s in picked
            )
        baskets["loner"] = frozenset({("only-mine", "a")})  # no co-purchase: the fallback
        limit = rng.randrange(1, 5)
        assert rank_all(baskets, limit) == one_by_one(baskets, limit)
