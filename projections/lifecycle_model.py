"""Lifecycle and churn counts kept by the analytics projector, so answers read a few rows.

Definitions are those of :mod:`projections.analytics`. Every count here is a sum over
customers of what each customer's own history contributes; a batch adds the difference
between its customers' contributions after and before it. Sums do not depend on the order in
which customers are applied, so live and rebuilt tables agree (:func:`counts.add_counts`).

Tables:

* ``analytics_stage_counts`` — customers per (stage, status) now;
* ``analytics_transitions`` — stage transitions per (UTC month of ``at``, from, to);
* ``analytics_active_months`` — per month M (``YYYY-MM``): how many more customers are
  *active at the start of M* than at the start of the month before it. The count for M is
  the sum up to M;
* ``analytics_churned`` — per calendar period (``month``, ``quarter``, ``year``; its first
  month): how many customers active at its start churned during it.

A customer is active at an instant S when registered before S and the latest (highest
version) of their stage/status events with ``at < S`` left them ``active``. Their history
cuts time into spans between the distinct ``at`` of their events; within a span
``(t, next t]`` the status is constant, so the months whose start is active form ranges.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from infra.read_tx import Tx
from infra.sql_chunks import among
from projections.counts import add_counts

Period = Literal["month", "quarter", "year"]
PERIOD_MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}
STAGE_KINDS = ("registered", "stage_changed", "churned", "reactivated")
LIVE_STATUSES = ("active", "churned")
History = Sequence[tuple[str, str, str]]  # (kind, at, status after), in version order
NONE = ""  # a missing stage, in the count tables' keys

TABLES = (
    "analytics_stage_counts",
    "analytics_transitions",
    "analytics_active_months",
    "analytics_churned",
)
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {analytics_stage_counts} (stage TEXT NOT NULL,
        status TEXT NOT NULL, customers BIGINT NOT NULL, PRIMARY KEY (stage, status))""",
    """CREATE TABLE IF NOT EXISTS {analytics_transitions} (month TEXT NOT NULL,
        from_stage TEXT NOT NULL, to_stage TEXT NOT NULL, transitions BIGINT NOT NULL,
        PRIMARY KEY (month, from_stage, to_stage))""",
    """CREATE TABLE IF NOT EXISTS {analytics_active_months} (month TEXT PRIMARY KEY,
        delta BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {analytics_churned} (period TEXT NOT NULL,
        start TEXT NOT NULL, customers BIGINT NOT NULL, PRIMARY KEY (period, start))""",
)


# ------------------------------------------------------------------ one customer's share


def _month(at: str) -> tuple[int, int]:
    return int(at[:4]), int(at[5:7])


def _key(year: int, month: int) -> str:
    """``YYYY-MM`` of a (year, month), the month normalised (13 -> January next year)."""
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return f"{year:04d}-{month:02d}"


def _start(key: str) -> str:
    """The instant a ``YYYY-MM`` month starts, as stored text."""
    return f"{key}-01T00:00:00.000000+00:00"


def period_start(period: str, at: str) -> str:
    """``YYYY-MM`` of the first month of the calendar period holding ``at``."""
    year, month = _month(at)
    months = PERIOD_MONTHS[period]
    return _key(year, (month - 1) // months * months + 1)


Span = tuple[str, str | None, str]  # (after, until, status): status at S for after < S <= until


def spans(history: History) -> list[Span]:
    """The status at every instant after registration, as spans; empty if not registered."""
    if not history or history[0][0] != "registered":
        return []
    latest: dict[str, int] = {}  # at -> index of the highest version at that instant
    for index, (_, at, _) in enumerate(history):
        latest[at] = index
    times = sorted(latest)
    result: list[Span] = []
    best = -1
    for position, at in enumerate(times):
        best = max(best, latest[at])
        until = times[position + 1] if position + 1 < len(times) else None
        if at >= history[0][1]:  # S > at >= registration
            result.append((at, until, history[best][2]))
    return result


def active_at(parts: Sequence[Span], moment: str) -> bool:
    """Active at ``moment``, from the customer's :func:`spans`."""
    return any(
        status == "active" and after < moment and (until is None or moment <= until)
        for after, until, status in parts
    )


def contribution(history: History) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """What one customer adds to ``analytics_active_months`` (month -> delta) and to
    ``analytics_churned`` ((period, first month) -> 1)."""
    parts = spans(history)
    months: Counter[str] = Counter()
    for after, until, status in parts:
        if status != "active":
            continue
        year, month = _month(after)
        first = _key(year, month + 1)  # the first month start after ``after``
        last = _key(*_month(until)) if until is not None else None  # the last one up to until
        if last is not None and last < first:
            continue
        months[first] += 1
        if last is not None:
            months[_key(int(last[:4]), int(last[5:]) + 1)] -= 1
    churned: Counter[tuple[str, str]] = Counter()
    for kind, at, _ in history:
        if kind == "churned":
            for period in PERIOD_MONTHS:
                start = period_start(period, at)
                if active_at(parts, _start(start)):
                    churned[period, start] = 1
    return Counter({month: delta for month, delta in months.items() if delta}), churned


# ------------------------------------------------------------------------------ writing


def update(
    tx: Tx,
    before: Mapping[str, tuple[str | None, str]],
    after: Mapping[str, tuple[str | None, str]],
    stage_rows: Sequence[tuple[Any, ...]],
) -> None:
    """Add what a batch changed: customers' (stage, status) ``before`` it (absent: new) and
    ``after`` it, and the ``analytics_stages`` rows it appends (not yet written)."""
    stages: Counter[tuple[str, str]] = Counter()
    for customer, (stage, status) in after.items():
        stages[stage or NONE, status] += 1
        if customer in before:
            old_stage, old_status = before[customer]
            stages[old_stage or NONE, old_status] -= 1
    transitions: Counter[tuple[str, str, str]] = Counter(
        (at[:7], from_stage or NONE, to_stage or NONE)
        for _, _, kind, at, from_stage, to_stage, _ in stage_rows
        if kind in STAGE_KINDS
    )
    months: Counter[str] = Counter()
    churned: Counter[tuple[str, str]] = Counter()
    old = _histories(tx, sorted({row[0] for row in stage_rows}))
    new: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for customer, _, kind, at, _, _, status in stage_rows:
        new[customer].append((kind, at, status))
    for customer, rows in new.items():
        was = old.get(customer, [])
        gained_months, gained_churn = contribution([*was, *rows])
        lost_months, lost_churn = contribution(was)
        months.update(gained_months)
        months.subtract(lost_months)
        churned.update(gained_churn)
        churned.subtract(lost_churn)
    add_counts(tx, "analytics_stage_counts", ("stage", "status"), "customers", stages)
    add_counts(
        tx, "analytics_transitions", ("month", "from_stage", "to_stage"), "transitions", transitions
    )
    deltas = {(month,): delta for month, delta in months.items()}
    add_counts(tx, "analytics_active_months", ("month",), "delta", deltas, signed=True)
    add_counts(tx, "analytics_churned", ("period", "start"), "customers", churned)


def _histories(tx: Tx, customers: Sequence[str]) -> dict[str, list[tuple[str, str, str]]]:
    found: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for condition, params in among(tx, "customer_id", customers):
        for customer, kind, at, status in tx.fetchall(
            "SELECT customer_id, kind, at, status FROM {analytics_stages} "
            f"WHERE {condition} ORDER BY customer_id, version",
            params,
        ):
            found[customer].append((kind, at, status))
    return found


# ------------------------------------------------------------------------------ reading


def lifecycle(tx: Tx) -> dict[str, Any]:
    """Live customers per stage, customers per status, and stage transitions per month."""
    stages: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for stage, status, customers in tx.fetchall(
        "SELECT stage, status, customers FROM {analytics_stage_counts}"
    ):
        statuses[status] += int(customers)
        if status in LIVE_STATUSES:
            stages[stage] += int(customers)
    rows = tx.fetchall(
        "SELECT month, from_stage, to_stage, transitions FROM {analytics_transitions} "
        "ORDER BY month, from_stage, to_stage"
    )
    return {
        "stages": {stage or None: n for stage, n in sorted(stages.items()) if n},
        "statuses": {status: n for status, n in sorted(statuses.items()) if n},
        "transitions": [
            {"month": m, "from": f or None, "to": t or None, "count": int(n)} for m, f, t, n in rows
        ],
    }


def report(
    bounds: Iterable[tuple[str, str]],
    period: str,
    deltas: Mapping[str, int],
    churned: Mapping[tuple[str, str], int],
) -> list[dict[str, Any]]:
    """Churn per period from the counts: ``bounds`` are (first month, following period's first
    month) as ``YYYY-MM``; ``deltas`` the active months' deltas up to the last period."""
    ordered = sorted(deltas.items())
    result = []
    for first, following in bounds:
        active = sum(delta for month, delta in ordered if month <= first)
        lost = churned.get((period, first), 0)
        result.append(
            {
                "period": f"{first}-01",
                "end": f"{following}-01",
                "active_at_start": active,
                "churned": lost,
                "rate": round(lost / active, 6) if active else None,
            }
        )
    return result


def churn(tx: Tx, period: str, bounds: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Churn per period (``bounds`` as for :func:`report`) from the count tables."""
    if not bounds:
        return []
    first, last = bounds[0][0], bounds[-1][0]
    deltas: dict[str, int] = {
        month: int(delta)
        for month, delta in tx.fetchall(
            "SELECT month, delta FROM {analytics_active_months} WHERE month <= ?", (last,)
        )
    }
    churned = tx.fetchall(
        "SELECT start, customers FROM {analytics_churned} WHERE period = ? AND start >= ? "
        "AND start <= ?",
        (period, first, last),
    )
    counts = {(period, start): int(customers) for start, customers in churned}
    return report(bounds, period, deltas, counts)
