"""RFM scores depend on the customers' values alone (issue 14, item 5).

Expected scores come from an independent re-implementation of the documented rule, written
here from its definition — ``1 + floor(5 * L / N)``, L the number of customers with a strictly
worse value (the strict percentile rank) — by counting, never through :func:`rfm.cuts`.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from projections import rfm
from tests.rfm_support import heavy_ties, independent, strict_percentile_score

END = datetime(2024, 6, 30, 18, tzinfo=UTC)


def test_scores_match_the_independent_computation_on_heavily_tied_data() -> None:
    purchases = heavy_ties(3000, END, seed=5)
    scored = rfm.scores(purchases, END)
    assert scored == independent(purchases, END)
    # the ties are heavy: most of the population shares a handful of values per dimension
    assert len({row["frequency"] for row in scored.values()}) <= 6
    assert sum(row["frequency"] == 0 for row in scored.values()) > 1500
    one_time = [row for row in scored.values() if row["frequency"] == 0]
    assert {(row["f"], row["m"]) for row in one_time} == {(1, 1)}  # one-time buyers: F1, M1


def test_the_issues_three_customers_share_scores_and_a_reload_moves_nobody() -> None:
    day = datetime(2024, 3, 1, 10, tzinfo=UTC)
    people = [(f"p{i}", day + timedelta(days=i % 50), Decimal(i % 5)) for i in range(200)]
    same = [(f"same{i}", datetime(2024, 2, 1, 9, tzinfo=UTC), Decimal("20.00")) for i in range(3)]
    purchases = people + people[:80] + same  # 80 people bought twice on their day
    rng = random.Random(1)
    loads = []
    for _ in range(3):  # the same data loaded three times under other ids, rows shuffled
        ids = {name: str(UUID(int=rng.getrandbits(128), version=4)) for name, _, _ in purchases}
        rows = [(ids[name], at, amount) for name, at, amount in purchases]
        rng.shuffle(rows)
        scored = rfm.scores(rows, END)
        loads.append({name: scored[uid] for name, uid in ids.items()})
    assert loads[0] == loads[1] == loads[2]
    assert len({tuple(sorted(loads[0][f"same{i}"].items())) for i in range(3)}) == 1


Values = st.lists(st.integers(min_value=-3, max_value=3), min_size=1, max_size=40)


@given(Values)
def test_quintiles_follow_the_strict_percentile_rank(values: list[int]) -> None:
    keys = {f"c{i}": v for i, v in enumerate(values)}
    scored = rfm.quintiles(keys)
    assert scored == {c: strict_percentile_score(values, v) for c, v in keys.items()}
    for a, value_a in keys.items():
        for b, value_b in keys.items():
            if value_a == value_b:
                assert scored[a] == scored[b]
            elif value_a < value_b:
                assert scored[a] <= scored[b]  # a better value never scores lower
    assert min(scored.values()) == 1


POOL = [str(UUID(int=random.Random(i).getrandbits(128), version=4)) for i in range(40)]


@given(Values)
def test_cuts_from_counted_values_equal_the_cuts_of_the_values(values: list[int]) -> None:
    counted = sorted(Counter(values).items())
    assert rfm.cuts_of_counts(counted) == rfm.cuts(values)
    assert rfm.cuts_of_counts([]) == ()


Purchases = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=12),  # who
        st.integers(min_value=0, max_value=20),  # days before the end
        st.sampled_from(["0", "5", "5.00", "12.50", "0.005"]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200)
@given(Purchases, st.randoms(use_true_random=False))
def test_other_ids_and_row_orders_never_change_a_score(
    drawn: list[tuple[int, int, str]], rng: random.Random
) -> None:
    def load() -> dict[int, dict[str, Any]]:
        whos = sorted({who for who, _, _ in drawn})
        ids = dict(zip(whos, rng.sample(POOL, len(whos)), strict=True))  # distinct, any order
        rows = [(ids[w], END - timedelta(days=d, hours=w), Decimal(a)) for w, d, a in drawn]
        rng.shuffle(rows)
        scored = rfm.scores(rows, END)
        assert scored == independent(rows, END)
        return {who: scored[uid] for who, uid in ids.items()}

    first, second = load(), load()
    assert first == second
    for a in first.values():
        for b in first.values():
            last_a, last_b = a["T"] - a["recency"], b["T"] - b["recency"]  # days since last
            if last_a == last_b:
                assert a["r"] == b["r"]
            if last_a > last_b:
                assert a["r"] <= b["r"]
            if a["frequency"] <= b["frequency"]:
                assert a["f"] <= b["f"]
            if Decimal(a["monetary"]) <= Decimal(b["monetary"]):
                assert a["m"] <= b["m"]
