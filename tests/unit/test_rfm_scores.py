"""RFM scores depend on the customers' values alone (issue 14, item 5).

Expected scores come from an independent re-implementation of the documented rule, written
here from its definition — ``1 + floor(5 * L / N)``, L the number of customers with a strictly
worse value (the strict percentile rank) — by counting, never through :func:`rfm.cuts`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from projections import rfm

END = datetime(2024, 6, 30, 18, tzinfo=UTC)
GRID = {  # the documented R (rows) x F (columns 1-5) grid, written out again
    5: ["new", "potential_loyalist", "potential_loyalist", "champions", "champions"],
    4: ["new", "potential_loyalist", "potential_loyalist", "champions", "champions"],
    3: ["needs_attention", "needs_attention", "needs_attention", "loyal", "loyal"],
    2: ["hibernating", "hibernating", "at_risk", "at_risk", "at_risk"],
    1: ["lost", "hibernating", "at_risk", "at_risk", "at_risk"],
}
Purchase = tuple[str, datetime, Decimal]


def strict_percentile_score(values: list[Any], value: Any) -> int:
    below = sum(1 for other in values if other < value)
    return 1 + 5 * below // len(values)


def independent(purchases: list[Purchase], end: datetime) -> dict[str, dict[str, Any]]:
    """Summary and scores from the documented definitions, computed the plain way."""
    end_day = end.date()
    spend: dict[str, dict[date, Decimal]] = defaultdict(dict)
    for customer, at, amount in purchases:
        day = at.astimezone(UTC).date()
        if day <= end_day:
            spend[customer][day] = spend[customer].get(day, Decimal(0)) + amount
    rows: dict[str, dict[str, Any]] = {}
    for customer, days in spend.items():
        ordered = sorted(days)
        repeats = [days[d] for d in ordered[1:]]
        mean = sum(repeats, Decimal(0)) / len(repeats) if repeats else Decimal(0)
        rows[customer] = {
            "frequency": len(repeats),
            "recency": (ordered[-1] - ordered[0]).days,
            "T": (end_day - ordered[0]).days,
            "monetary": str(mean.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)),
            "last": ordered[-1],
        }
    last = [row["last"] for row in rows.values()]
    frequency = [row["frequency"] for row in rows.values()]
    money = [Decimal(row["monetary"]) for row in rows.values()]
    for row in rows.values():
        r = strict_percentile_score(last, row.pop("last"))
        f = strict_percentile_score(frequency, row["frequency"])
        m = strict_percentile_score(money, Decimal(row["monetary"]))
        row.update(r=r, f=f, m=m, group=GRID[r][f - 1])
    return rows


def heavy_ties(customers: int, seed: int) -> list[Purchase]:
    """Few distinct days and amounts, 60 % one-time buyers, zero amounts, same-day repeats."""
    rng = random.Random(seed)
    days = [END - timedelta(days=rng.randrange(400)) for _ in range(25)]
    amounts = [Decimal(a) for a in ("0.00", "9.99", "10.00", "25.00", "25.005", "100")]
    purchases = []
    for index in range(customers):
        customer = str(UUID(int=rng.getrandbits(128), version=4))
        count = 1 if rng.random() < 0.6 else rng.randint(2, 6)
        for _ in range(count):
            when = rng.choice(days) + timedelta(hours=rng.randrange(6))
            purchases.append((customer, when, rng.choice(amounts)))
        if index % 7 == 0:  # a second purchase on the same day: still one purchase day
            purchases.append((customer, purchases[-1][1], rng.choice(amounts)))
    return purchases


def test_scores_match_the_independent_computation_on_heavily_tied_data() -> None:
    purchases = heavy_ties(3000, seed=5)
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
