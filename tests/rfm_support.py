"""An independent account of the documented RFM method, for tests to compare against.

Written from the definitions in the README (the strict percentile rank: ``1 + floor(5 * L /
N)``, L the number of customers with a strictly worse value) by counting, never through
:mod:`projections.rfm`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from uuid import UUID

GRID = {  # the documented R (rows) x F (columns 1-5) grid, written out again
    5: ["new", "potential_loyalist", "potential_loyalist", "champions", "champions"],
    4: ["new", "potential_loyalist", "potential_loyalist", "champions", "champions"],
    3: ["needs_attention", "needs_attention", "needs_attention", "loyal", "loyal"],
    2: ["hibernating", "hibernating", "at_risk", "at_risk", "at_risk"],
    1: ["lost", "hibernating", "at_risk", "at_risk", "at_risk"],
}
Purchase = tuple[str, datetime, Decimal]  # (customer, occurred_at, amount)


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


def heavy_ties(customers: int, end: datetime, seed: int) -> list[Purchase]:
    """Few distinct days and amounts, 60 % one-time buyers, zero amounts, same-day repeats."""
    rng = random.Random(seed)
    days = [end - timedelta(days=rng.randrange(400)) for _ in range(25)]
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
