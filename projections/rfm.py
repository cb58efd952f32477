"""RFM: pure computations over purchase rows (no I/O), used by :func:`projections.analytics.rfm`.

**Summary** — the transaction-summary definitions of the ``lifetimes`` library
(``summary_data_from_transaction_data``, ``freq="D"``) for ONE currency; purchases in other
currencies are ignored. Purchase times are floored to their UTC day; a day's spend is the sum of
its purchases; purchases after the observation end's day are left out.

* ``frequency`` = number of distinct purchase days after the first purchase day;
* ``recency`` = last purchase day - first purchase day, in days (0 when frequency is 0);
* ``T`` = observation end day - first purchase day, in days;
* ``monetary`` = mean spend of the repeat purchase days (first day excluded), rounded half-even
  to cents and given as a string; ``"0.00"`` when frequency is 0.

**Scores** — rank quintiles 1-5 over all summarised customers: sort ascending by the key below,
ties broken by customer id (the smaller id ranks lower); the customer at 0-based rank ``i`` of
``n`` scores ``1 + floor(5 * i / n)`` (quintile sizes differ by at most one).

* R on ``-(T - recency)``: fewer days since the last purchase scores higher;
* F on ``frequency``; M on ``monetary`` (the reported, rounded value).

**Groups** — by (R, F); M does not take part::

    R \\ F   1               2                   3                   4          5
    5        new             potential_loyalist  potential_loyalist  champions  champions
    4        new             potential_loyalist  potential_loyalist  champions  champions
    3        needs_attention needs_attention     needs_attention     loyal      loyal
    2        hibernating     hibernating         at_risk             at_risk    at_risk
    1        lost            hibernating         at_risk             at_risk    at_risk
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

CENT = Decimal("0.01")

GROUPS: dict[int, tuple[str, str, str, str, str]] = {  # R score -> group for F = 1..5
    5: ("new", "potential_loyalist", "potential_loyalist", "champions", "champions"),
    4: ("new", "potential_loyalist", "potential_loyalist", "champions", "champions"),
    3: ("needs_attention", "needs_attention", "needs_attention", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at_risk", "at_risk", "at_risk"),
    1: ("lost", "hibernating", "at_risk", "at_risk", "at_risk"),
}


def summarise(
    purchases: Iterable[tuple[str, date, Decimal]], observation_end: date
) -> dict[str, dict[str, Any]]:
    """Per customer ``{frequency, recency, T, monetary}`` from ``(customer, day, amount)`` rows."""
    spend: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for customer, day, amount in purchases:
        if day <= observation_end:
            spend[customer][day] += amount
    summary = {}
    for customer, days in spend.items():
        first, *repeats = sorted(days)
        total = sum((days[d] for d in repeats), Decimal(0))
        summary[customer] = {
            "frequency": len(repeats),
            "recency": (repeats[-1] - first).days if repeats else 0,
            "T": (observation_end - first).days,
            "monetary": str((total / len(repeats) if repeats else Decimal(0)).quantize(CENT)),
        }
    return summary


def quintiles(keys: Mapping[str, Any]) -> dict[str, int]:
    """Rank quintile score 1-5 per customer, ascending by key, ties by customer id."""
    ranked = sorted(keys, key=lambda customer: (keys[customer], customer))
    return {customer: 1 + 5 * rank // len(ranked) for rank, customer in enumerate(ranked)}


def group(r: int, f: int) -> str:
    """The named group of an (R, F) score pair (see the module's table)."""
    return GROUPS[r][f - 1]


def score(summary: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``summary`` rows with scores ``r``, ``f``, ``m`` and ``group`` added."""
    r = quintiles({c: -(s["T"] - s["recency"]) for c, s in summary.items()})
    f = quintiles({c: s["frequency"] for c, s in summary.items()})
    m = quintiles({c: Decimal(s["monetary"]) for c, s in summary.items()})
    return {
        c: {**s, "r": r[c], "f": f[c], "m": m[c], "group": group(r[c], f[c])}
        for c, s in summary.items()
    }


def scores(
    purchases: Iterable[tuple[str, datetime, Decimal]], observation_end: datetime
) -> dict[str, dict[str, Any]]:
    """:func:`score` of the :func:`summarise` of ``(customer, occurred_at, amount)`` purchases,
    times floored to their UTC day (naive ones read as UTC)."""

    def day(moment: datetime) -> date:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()

    return score(summarise(((c, day(at), a) for c, at, a in purchases), day(observation_end)))
