"""Analytics read model: lifecycle, churn rate, satisfaction (NPS/CSAT) and RFM.

Tables: ``analytics_customers`` (current stage and status), ``analytics_stages`` (one row per
event that changed a customer's stage or status, with ``kind``, business time ``at`` and the
status after it), ``analytics_purchases`` and ``analytics_feedback``. All times are the events'
``occurred_at`` (business time) as UTC ISO 8601 text. Answers over the whole base read counts
and summaries kept beside them, never every customer's rows: lifecycle and churn counts
(:mod:`projections.lifecycle_model`), RFM per purchase day (:mod:`projections.rfm_model`).

Definitions:

* **live** customers are ``active`` or ``churned``; merged and erased ones are left out of
  current stage counts and RFM (their past transitions stay in the monthly counts).
* **churn rate** of a calendar period ``[S, E)`` = churned ÷ active at start, where a customer is
  *active at start* if registered (``at < S``) and, replaying in version order the customer's
  stage/status events with ``at < S``, their status is ``active`` — not churned, merged or
  erased; *churned* = those of them with at least one ``customer.churned`` event with
  ``S <= at < E`` (customers registered during the period do not count; rate ``None`` when
  nobody was active at start). Periods are whole calendar months, quarters or years (UTC)
  overlapping ``[start, end)``.
* **NPS** = % promoters (9-10) - % detractors (0-6) and **CSAT** = % of answers 4-5, each over
  the *latest* answer per customer (highest version with that score present; feedback
  carrying only the other score does not replace it). Merged duplicates are left out (the
  survivor speaks for the person); erased customers' answers stay (anonymous facts).
* **RFM**: definitions in :mod:`projections.rfm`, kept per customer and purchase day by
  :mod:`projections.rfm_model` (``analytics_rfm``); one currency at a time, live customers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from infra.envelope import Envelope
from infra.read_tx import Tx
from infra.sql_chunks import among
from projections import lifecycle_model, rfm_model
from projections.framework import Projector

Period = Literal["month", "quarter", "year"]


def utc(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds: compared and sorted as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass
class _Customer:
    version: int
    stage: str | None
    status: str


@dataclass
class _Changes:
    """Rows one batch writes; purchases keyed so a later change in the batch wins."""

    stages: list[tuple[Any, ...]]
    purchases: dict[tuple[str, str], tuple[str, ...] | None]
    feedback: list[tuple[Any, ...]]


STAGE_COLUMNS = ("customer_id", "version", "kind", "at", "from_stage", "to_stage", "status")
FEEDBACK_COLUMNS = ("customer_id", "version", "nps", "csat", "at")


class AnalyticsProjector(Projector):
    """Keeps the four analytics tables from lifecycle, purchase, feedback and merge events."""

    name = "analytics"
    schema_version = 3
    tables = (
        "analytics_customers",
        "analytics_stages",
        "analytics_purchases",
        "analytics_feedback",
        *rfm_model.TABLES,
        *lifecycle_model.TABLES,
    )
    schema = (
        """CREATE TABLE IF NOT EXISTS {analytics_customers} (
            customer_id TEXT PRIMARY KEY, version BIGINT NOT NULL, stage TEXT,
            status TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS {analytics_stages} (
            customer_id TEXT NOT NULL, version BIGINT NOT NULL, kind TEXT NOT NULL,
            at TEXT NOT NULL, from_stage TEXT, to_stage TEXT, status TEXT NOT NULL,
            PRIMARY KEY (customer_id, version))""",
        """CREATE TABLE IF NOT EXISTS {analytics_purchases} (
            customer_id TEXT NOT NULL, order_id TEXT NOT NULL, amount TEXT NOT NULL,
            currency TEXT NOT NULL, occurred_at TEXT NOT NULL,
            PRIMARY KEY (customer_id, order_id))""",
        """CREATE TABLE IF NOT EXISTS {analytics_feedback} (
            customer_id TEXT NOT NULL, version BIGINT NOT NULL, nps INTEGER, csat INTEGER,
            at TEXT NOT NULL, PRIMARY KEY (customer_id, version))""",
        *rfm_model.SCHEMA,
        *lifecycle_model.SCHEMA,
    )
    handles = frozenset(
        {
            "customer.registered",
            "customer.lifecycle_stage_changed",
            "customer.churned",
            "customer.reactivated",
            "customer.merged_into",
            "customer.unmerged",
            "customer.erased",
            "customer.purchase_recorded",
            "customer.purchase_refunded",
            "customer.duplicate_absorbed",
            "customer.feedback_recorded",
        }
    )

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        customers = _load(tx, sorted({e.customer_key for e in envelopes}))
        before = {k: (s.stage, s.status) for k, s in customers.items()}
        changes = _Changes([], {}, [])
        rfm_events = []
        for e in envelopes:
            key = e.customer_key
            state = customers.setdefault(key, _Customer(0, None, "active"))
            if e.version > state.version:  # older versions: already applied
                _fold(changes, key, state, e)
                state.version = e.version
                if e.type in rfm_model.CHANGES:
                    rfm_events.append(e)
        tx.upsert(
            "analytics_customers",
            ("customer_id",),
            ("customer_id", "version", "stage", "status"),
            [(k, s.version, s.stage, s.status) for k, s in sorted(customers.items())],
        )
        after = {k: (s.stage, s.status) for k, s in customers.items()}
        lifecycle_model.update(tx, before, after, changes.stages)
        # stages and feedback are rows of new versions only (the framework checked)
        tx.insert("analytics_stages", STAGE_COLUMNS, changes.stages)
        tx.delete(
            "analytics_purchases",
            ("customer_id", "order_id"),
            sorted(k for k, row in changes.purchases.items() if row is None),
        )
        tx.upsert(
            "analytics_purchases",
            ("customer_id", "order_id"),
            ("customer_id", "order_id", "amount", "currency", "occurred_at"),
            [(*k, *row) for k, row in sorted(changes.purchases.items()) if row is not None],
        )
        tx.insert("analytics_feedback", FEEDBACK_COLUMNS, changes.feedback)
        live = {k: s.status in lifecycle_model.LIVE_STATUSES for k, s in customers.items()}
        rfm_model.update(tx, rfm_events, live)


def _load(tx: Tx, ids: list[str]) -> dict[str, _Customer]:
    found: dict[str, _Customer] = {}
    for condition, params in among(tx, "customer_id", ids):
        rows = tx.fetchall(
            f"SELECT customer_id, version, stage, status FROM {{analytics_customers}} WHERE {condition}",
            params,
        )
        found.update({c: _Customer(int(v), stage, status) for c, v, stage, status in rows})
    return found


_MOVES: dict[str, tuple[str, str | None, str | None]] = {  # type -> (kind, stage, status)
    "customer.lifecycle_stage_changed": ("stage_changed", None, None),  # stage from data
    "customer.churned": ("churned", "churned", "churned"),
    "customer.reactivated": ("reactivated", "active", "active"),
    "customer.merged_into": ("merged", None, "merged"),
    "customer.erased": ("erased", None, "erased"),
}


def _fold(changes: _Changes, key: str, state: _Customer, e: Envelope) -> None:
    """Record what one new event changes; ``state`` is updated in place."""
    before = state.stage
    if e.type == "customer.registered":
        kind, before = "registered", None
        state.stage, state.status = e.data["lifecycle_stage"], "active"
    elif e.type in _MOVES:
        kind, stage, status = _MOVES[e.type]
        state.stage = e.data["stage"] if kind == "stage_changed" else stage or state.stage
        state.status = status or state.status
    elif e.type == "customer.unmerged" and e.data["role"] == "duplicate":
        kind, state.status = "unmerged", "churned" if state.stage == "churned" else "active"
    else:
        _facts(changes, key, e)
        return
    at = utc(e.occurred_at)
    changes.stages.append((key, e.version, kind, at, before, state.stage, state.status))


def _facts(changes: _Changes, key: str, e: Envelope) -> None:
    """Feedback scores; purchases recorded, absorbed by a merge, given back by an unmerge or
    refunded."""
    data = e.data
    if e.type == "customer.feedback_recorded":
        if data["nps"] is not None or data["csat"] is not None:
            row = (key, e.version, data["nps"], data["csat"], utc(e.occurred_at))
            changes.feedback.append(row)
        return
    if e.type == "customer.purchase_refunded":
        changes.purchases[key, data["order_id"]] = None
        return
    if e.type == "customer.purchase_recorded":
        purchases = {data["order_id"]: {**data, "occurred_at": e.occurred_text}}
    else:  # customer.duplicate_absorbed, or customer.unmerged on the survivor's side
        purchases = data["purchases"]
    gone = e.type == "customer.unmerged"
    for order_id, p in purchases.items():
        when = utc(datetime.fromisoformat(p["occurred_at"]))
        changes.purchases[key, order_id] = None if gone else (str(p["amount"]), p["currency"], when)


# ------------------------------------------------------------------------------ queries


def lifecycle(tx: Tx) -> dict[str, Any]:
    """Live customers per stage, customers per status, and stage transitions per month.

    Transitions (registration included, ``from`` = None) count every customer's history.
    """
    return lifecycle_model.lifecycle(tx)


def period_bounds(period: Period, start: date, end: date) -> list[tuple[date, date]]:
    """Whole calendar periods ``[first day, next period's first day)`` overlapping [start, end)."""
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    first = date(start.year, (start.month - 1) // months * months + 1, 1)
    bounds = []
    while first < end:
        total = first.month - 1 + months
        following = date(first.year + total // 12, total % 12 + 1, 1)
        bounds.append((first, following))
        first = following
    return bounds


def _months(bounds: Sequence[tuple[date, date]]) -> list[tuple[str, str]]:
    return [(first.isoformat()[:7], following.isoformat()[:7]) for first, following in bounds]


def churn_periods(
    histories: Mapping[str, lifecycle_model.History], period: Period, start: date, end: date
) -> list[dict[str, Any]]:
    """Churn per period from customers' stage/status histories (module docstring): what the
    read model's counts give for the same histories."""
    deltas: Counter[str] = Counter()
    churned: Counter[tuple[str, str]] = Counter()
    for history in histories.values():
        months, lost = lifecycle_model.contribution(history)
        deltas.update(months)
        churned.update(lost)
    return lifecycle_model.report(
        _months(period_bounds(period, start, end)), period, deltas, churned
    )


def churn(tx: Tx, period: Period, start: date, end: date) -> list[dict[str, Any]]:
    """Churn rate per calendar period overlapping ``[start, end)``."""
    return lifecycle_model.churn(tx, period, _months(period_bounds(period, start, end)))


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 4) if whole else None


def satisfaction_summary(answers: Iterable[tuple[str, int | None, int | None]]) -> dict[str, Any]:
    """NPS and CSAT from ``(customer, nps, csat)`` answers in version order (latest wins)."""
    nps: dict[str, int] = {}
    csat: dict[str, int] = {}
    for customer, promoter_score, happiness in answers:
        if promoter_score is not None:
            nps[customer] = int(promoter_score)
        if happiness is not None:
            csat[customer] = int(happiness)
    promoters = sum(s >= 9 for s in nps.values())
    detractors = sum(s <= 6 for s in nps.values())
    satisfied = sum(s >= 4 for s in csat.values())
    return {
        "nps": {"score": _percent(promoters - detractors, len(nps)), "responses": len(nps)},
        "csat": {"score": _percent(satisfied, len(csat)), "responses": len(csat)},
        "counts": {
            "nps": {
                "promoters": promoters,
                "passives": len(nps) - promoters - detractors,
                "detractors": detractors,
            },
            "csat": {"satisfied": satisfied, "unsatisfied": len(csat) - satisfied},
        },
    }


def satisfaction(tx: Tx) -> dict[str, Any]:
    """NPS and CSAT over each customer's latest answer (merged duplicates left out), with counts."""
    rows = tx.fetchall(
        "SELECT f.customer_id, f.nps, f.csat FROM {analytics_feedback} f "
        "JOIN {analytics_customers} c ON c.customer_id = f.customer_id "
        "WHERE c.status <> 'merged' ORDER BY f.customer_id, f.version"
    )
    return satisfaction_summary(rows)
