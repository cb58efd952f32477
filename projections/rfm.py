"""RFM: pure computations over purchase rows (no I/O), shared by every read model that scores.

The analytics read model (:mod:`projections.rfm_model`, ``GET /v1/analytics/rfm``) and the
segments read model (RFM ranked at recorded refreshes) both score with :func:`cuts` and
:func:`score_of`, so one customer gets one score whichever asks.

**Summary** — the transaction-summary definitions of the ``lifetimes`` library
(``summary_data_from_transaction_data``, ``freq="D"``) for ONE currency; purchases in other
currencies are ignored, and a customer without a purchase in that currency up to the
observation end is not scored (not part of the population). Purchase times are floored to
their UTC day; a day's spend is the sum of its purchases; purchases after the observation
end's day are left out.

* ``frequency`` = number of distinct purchase days after the first purchase day;
* ``recency`` = last purchase day - first purchase day, in days (0 when frequency is 0);
* ``T`` = observation end day - first purchase day, in days;
* ``monetary`` = mean spend of the repeat purchase days (first day excluded), rounded half-even
  to cents and given as a string; ``"0.00"`` when frequency is 0 (a one-time buyer) and for
  zero spend.

**Scores** — each of R, F and M is scored 1-5 over the N customers of the population, from the
customer's value alone: ``score = 1 + floor(5 * L / N)``, where ``L`` is the number of
customers with a strictly worse value. ``100 * L / N`` is the *strict percentile rank* of the
value (``scipy.stats.percentileofscore(values, v, kind="strict")``: "only values that are
strictly less than the given score are counted"); ``L + 1`` is pandas'
``Series.rank(method="min")``, the lowest rank of the tied group. So equal values get equal
scores, whatever the customers' ids or the order of the rows (the common
``pd.qcut(x.rank(method="first"), 5)`` breaks ties by row order instead, and reloading the
same data then moves customers between groups). Equivalently: sort the N values ascending,
``v[1] <= ... <= v[N]``; the four **cuts** are ``v[ceil(k * N / 5)]`` for k = 1..4, and a
value scores 1 + the number of cuts strictly below it. Without ties this is the plain rank
quintile ``1 + floor(5 * i / N)`` of the 0-based rank i. With ties:

* the worst value always scores 1: every one-time buyer has F = 1 (frequency 0), and every
  one-time buyer or zero spender M = 1 (monetary 0.00);
* a tied group never straddles a cut, so quintiles differ in size, and a score can be
  missing: when more than a fifth of the customers share the best value, nobody scores 5
  (a 5 means "better than at least 80 % of the customers").

Values: R on the last purchase day (later is better: at one observation end, the same order
as fewer days since the last purchase, ``T - recency``); F on ``frequency``; M on
``monetary`` (the reported, rounded value).

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
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

CENT = Decimal("0.01")
SCORES = range(1, 6)

GROUPS: dict[int, tuple[str, str, str, str, str]] = {  # R score -> group for F = 1..5
    5: ("new", "potential_loyalist", "potential_loyalist", "champions", "champions"),
    4: ("new", "potential_loyalist", "potential_loyalist", "champions", "champions"),
    3: ("needs_attention", "needs_attention", "needs_attention", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at_risk", "at_risk", "at_risk"),
    1: ("lost", "hibernating", "at_risk", "at_risk", "at_risk"),
}
GROUP_NAMES = tuple(sorted({name for row in GROUPS.values() for name in row}))


@dataclass(frozen=True)
class Day:
    """One purchase day of a customer in one currency, with the summary as of that day: what
    an observation end on this day or later (before the next purchase day) reports."""

    day: date
    first_day: date
    frequency: int  # repeat purchase days so far
    repeat_spend: Decimal  # spend of the repeat days so far
    monetary: str  # mean spend of the repeat days, half-even to cents ("0.00" without any)


def running(spend: Mapping[date, Decimal]) -> list[Day]:
    """The :class:`Day` of every purchase day in ``spend`` (day -> that day's spend), in order."""
    days: list[Day] = []
    repeat = Decimal(0)
    for ordinal, day in enumerate(sorted(spend)):
        if ordinal:
            repeat += spend[day]
        mean = repeat / ordinal if ordinal else Decimal(0)
        first = days[0].day if days else day
        days.append(Day(day, first, ordinal, repeat, str(mean.quantize(CENT))))
    return days


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
        last = running(days)[-1]
        summary[customer] = {
            "frequency": last.frequency,
            "recency": (last.day - last.first_day).days,
            "T": (observation_end - last.first_day).days,
            "monetary": last.monetary,
        }
    return summary


def cuts(values: Iterable[Any]) -> tuple[Any, ...]:
    """The four quintile cuts of ``values``: the values at the 1-based positions
    ``ceil(k * N / 5)``, k = 1..4, of their ascending order (empty when there are none)."""
    ordered = sorted(values)
    n = len(ordered)
    return tuple(ordered[(k * n + 4) // 5 - 1] for k in range(1, 5)) if n else ()


def cuts_of_counts(counts: Iterable[tuple[Any, int]]) -> tuple[Any, ...]:
    """:func:`cuts` of the values given as ``(value, how many)`` pairs in ascending order."""
    pairs = list(counts)
    n = sum(count for _, count in pairs)
    positions = [(k * n + 4) // 5 for k in range(1, 5)] if n else []
    found: list[Any] = []
    seen = 0
    for value, count in pairs:
        seen += count
        while len(found) < len(positions) and positions[len(found)] <= seen:
            found.append(value)
    return tuple(found)


def score_of(value: Any, limits: Iterable[Any]) -> int:
    """The score 1-5 of ``value``: 1 + the number of cuts strictly below it."""
    return 1 + sum(1 for cut in limits if value > cut)


def quintiles(keys: Mapping[str, Any]) -> dict[str, int]:
    """Score 1-5 per customer from its key alone (module docstring: equal keys, equal scores)."""
    limits = cuts(keys.values())
    return {customer: score_of(key, limits) for customer, key in keys.items()}


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


def utc_day(moment: datetime) -> date:
    """The UTC day of ``moment`` (a naive one is read as UTC)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def scores(
    purchases: Iterable[tuple[str, datetime, Decimal]], observation_end: datetime
) -> dict[str, dict[str, Any]]:
    """:func:`score` of the :func:`summarise` of ``(customer, occurred_at, amount)`` purchases,
    times floored to their UTC day."""
    rows = ((c, utc_day(at), a) for c, at, a in purchases)
    return score(summarise(rows, utc_day(observation_end)))
