"""Analytics read model: lifecycle, churn, satisfaction (NPS/CSAT) and RFM.

Definitions (documented in the README):

* **live customers** are active or churned (merged and erased ones are left out);
* **churn rate** of a period = customers who churned during it ÷ customers active at its start
  (registered before it, and not churned at its start by their latest stage transition);
* **NPS** = % promoters (9-10) - % detractors (0-6) over each customer's latest NPS;
  **CSAT** = % of 4-5 over each customer's latest CSAT;
* **RFM** follows the transaction-summary definitions (days, one currency): frequency =
  distinct repeat purchase days after the first, recency = last - first purchase day,
  T = observation end - first purchase day, monetary = mean spend of the repeat days (0 if
  none). Scores 1-5 are rank quintiles (ties broken by customer id): R on T - recency
  (fewer days since the last purchase scores higher), F on frequency, M on monetary.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from infra.envelope import Envelope
from projections.framework import Projector
from projections.readstore import Tx

LIVE = ("active", "churned")


def _day(iso: str) -> date:
    return datetime.fromisoformat(iso).astimezone(UTC).date()


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class AnalyticsProjector(Projector):
    name = "analytics"
    tables = (
        "analytics_customers",
        "analytics_stages",
        "analytics_purchases",
        "analytics_feedback",
    )
    schema = (
        "CREATE TABLE IF NOT EXISTS {analytics_customers} (customer_id TEXT PRIMARY KEY, stage TEXT NOT NULL, status TEXT NOT NULL, registered_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {analytics_stages} (customer_id TEXT NOT NULL, version BIGINT NOT NULL, from_stage TEXT, to_stage TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (customer_id, version))",
        "CREATE TABLE IF NOT EXISTS {analytics_purchases} (customer_id TEXT NOT NULL, order_id TEXT NOT NULL, amount TEXT NOT NULL, currency TEXT NOT NULL, occurred_at TEXT NOT NULL, PRIMARY KEY (customer_id, order_id))",
        "CREATE TABLE IF NOT EXISTS {analytics_feedback} (customer_id TEXT NOT NULL, version BIGINT NOT NULL, nps INTEGER, csat INTEGER, at TEXT NOT NULL, PRIMARY KEY (customer_id, version))",
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
            "customer.duplicate_absorbed",
            "customer.feedback_recorded",
        }
    )

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        for e in envelopes:  # few statements per event; batches keep one transaction
            self._one(tx, e)

    def _stage(self, tx: Tx, e: Envelope, to: str) -> None:
        row = tx.fetchone(
            "SELECT stage FROM {analytics_customers} WHERE customer_id = ?", (str(e.customer_id),)
        )
        tx.execute(
            "INSERT INTO {analytics_stages} VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (str(e.customer_id), e.version, row[0] if row else None, to, _utc(e.occurred_at)),
        )
        tx.execute(
            "UPDATE {analytics_customers} SET stage = ? WHERE customer_id = ?",
            (to, str(e.customer_id)),
        )

    def _status(self, tx: Tx, e: Envelope, status: str) -> None:
        tx.execute(
            "UPDATE {analytics_customers} SET status = ? WHERE customer_id = ?",
            (status, str(e.customer_id)),
        )

    def _purchases(self, tx: Tx, customer: str, purchases: dict[str, dict[str, Any]]) -> None:
        tx.executemany(
            "INSERT INTO {analytics_purchases} VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [
                (
                    customer,
                    order,
                    str(p["amount"]),
                    p["currency"],
                    _utc(datetime.fromisoformat(str(p["occurred_at"]))),
                )
                for order, p in purchases.items()
            ],
        )

    def _one(self, tx: Tx, e: Envelope) -> None:
        customer, data = str(e.customer_id), e.data
        if e.type == "customer.registered":
            tx.execute(
                "INSERT INTO {analytics_customers} VALUES (?, ?, 'active', ?) ON CONFLICT DO NOTHING",
                (customer, data["lifecycle_stage"], _utc(e.occurred_at)),
            )
            tx.execute(
                "INSERT INTO {analytics_stages} VALUES (?, ?, NULL, ?, ?) ON CONFLICT DO NOTHING",
                (customer, e.version, data["lifecycle_stage"], _utc(e.occurred_at)),
            )
        elif e.type == "customer.lifecycle_stage_changed":
            self._stage(tx, e, data["stage"])
        elif e.type == "customer.churned":
            self._stage(tx, e, "churned")
            self._status(tx, e, "churned")
        elif e.type == "customer.reactivated":
            self._stage(tx, e, "active")
            self._status(tx, e, "active")
        elif e.type in ("customer.merged_into", "customer.erased"):
            self._status(tx, e, "merged" if e.type == "customer.merged_into" else "erased")
        elif e.type == "customer.unmerged" and data["role"] == "duplicate":
            row = tx.fetchone(
                "SELECT stage FROM {analytics_customers} WHERE customer_id = ?", (customer,)
            )
            self._status(tx, e, "churned" if row and row[0] == "churned" else "active")
        elif e.type == "customer.unmerged":
            tx.executemany(
                "DELETE FROM {analytics_purchases} WHERE customer_id = ? AND order_id = ?",
                [(customer, o) for o in data["purchases"]],
            )
        elif e.type == "customer.purchase_recorded":
            self._purchases(
                tx, customer, {data["order_id"]: {**data, "occurred_at": e.occurred_at.isoformat()}}
            )
        elif e.type == "customer.duplicate_absorbed":
            self._purchases(tx, customer, data["purchases"])
        elif e.type == "customer.feedback_recorded":
            tx.execute(
                "INSERT INTO {analytics_feedback} VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (customer, e.version, data["nps"], data["csat"], _utc(e.occurred_at)),
            )


# ------------------------------------------------------------------------------ queries


def lifecycle(tx: Tx) -> dict[str, Any]:
    """Live customers per stage, and stage transitions per month."""
    counts: dict[str, int] = dict(
        tx.fetchall(
            "SELECT stage, COUNT(*) FROM {analytics_customers} WHERE status IN ('active', 'churned') GROUP BY stage"
        )
    )
    rows = tx.fetchall(
        "SELECT SUBSTR(at, 1, 7), from_stage, to_stage, COUNT(*) FROM {analytics_stages} WHERE from_stage IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    return {
        "stages": {stage: int(n) for stage, n in sorted(counts.items())},
        "transitions": [{"month": m, "from": f, "to": t, "count": int(n)} for m, f, t, n in rows],
    }


def _period_starts(period: str, start: date, end: date) -> list[date]:
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    first = date(start.year, ((start.month - 1) // months) * months + 1, 1)
    starts = []
    while first < end:
        starts.append(first)
        total = first.month - 1 + months
        first = date(first.year + total // 12, total % 12 + 1, 1)
    return starts


def _stage_at(transitions: list[tuple[str, str]], moment: str) -> str | None:
    """The stage a customer was in just before ``moment`` (transitions in version order)."""
    before = [to for at, to in transitions if at < moment]
    return before[-1] if before else None


def churn(tx: Tx, period: str, start: date, end: date) -> list[dict[str, Any]]:
    """Churn rate per period in [start, end)."""
    registered: dict[str, str] = dict(
        tx.fetchall("SELECT customer_id, registered_at FROM {analytics_customers}")
    )
    transitions: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for customer, at, to in tx.fetchall(
        "SELECT customer_id, at, to_stage FROM {analytics_stages} ORDER BY customer_id, version"
    ):
        transitions[customer].append((at, to))
    bounds = _period_starts(period, start, end)
    report = []
    for index, first in enumerate(bounds):
        last = bounds[index + 1] if index + 1 < len(bounds) else end
        lo, hi = f"{first.isoformat()}T", f"{last.isoformat()}T"
        active = [
            c
            for c, at in registered.items()
            if at < lo and _stage_at(transitions[c], lo) != "churned"
        ]
        churned = sum(
            1 for c in active if any(lo <= at < hi and to == "churned" for at, to in transitions[c])
        )
        rate = float(Decimal(churned) / Decimal(len(active))) if active else 0.0
        report.append(
            {
                "period": first.isoformat(),
                "active_at_start": len(active),
                "churned": churned,
                "rate": round(rate, 6),
            }
        )
    return report


def satisfaction(tx: Tx) -> dict[str, Any]:
    """NPS and CSAT over each customer's latest score."""
    result: dict[str, Any] = {}
    for column in ("nps", "csat"):
        latest: dict[str, int] = {}
        for customer, value in tx.fetchall(
            f"SELECT customer_id, {column} FROM {{analytics_feedback}} WHERE {column} IS NOT NULL ORDER BY customer_id, version"
        ):
            latest[customer] = int(value)
        scores = list(latest.values())
        if column == "nps":
            promoters, detractors = sum(s >= 9 for s in scores), sum(s <= 6 for s in scores)
            value = round(100 * (promoters - detractors) / len(scores), 4) if scores else None
        else:
            value = round(100 * sum(s >= 4 for s in scores) / len(scores), 4) if scores else None
        result[column] = {"score": value, "responses": len(scores)}
    return result


GROUPS = (  # first match wins: (name, r in, f in)
    ("lost", {1}, {1}),
    ("champions", {4, 5}, {4, 5}),
    ("loyal", {3, 4, 5}, {4, 5}),
    ("potential_loyalist", {4, 5}, {2, 3}),
    ("new", {4, 5}, {1}),
    ("at_risk", {1, 2}, {3, 4, 5}),
    ("hibernating", {1, 2}, {1, 2}),
)


def _quintiles(values: dict[str, Any]) -> dict[str, int]:
    ranked = sorted(values, key=lambda c: (values[c], c))
    return {c: 1 + (5 * i) // len(ranked) for i, c in enumerate(ranked)}


def rfm(tx: Tx, observation_end: datetime, currency: str = "EUR") -> dict[str, dict[str, Any]]:
    """RFM summary and scores per live customer with purchases in ``currency``."""
    days: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    rows = tx.fetchall(
        "SELECT p.customer_id, p.amount, p.occurred_at FROM {analytics_purchases} p JOIN {analytics_customers} c "
        "ON c.customer_id = p.customer_id WHERE p.currency = ? AND p.occurred_at <= ? AND c.status IN ('active', 'churned')",
        (currency, _utc(observation_end)),
    )
    for customer, amount, at in rows:
        days[customer][_day(at)] += Decimal(amount)
    end = observation_end.astimezone(UTC).date()
    summary: dict[str, dict[str, Any]] = {}
    for customer, spend in days.items():
        first, *repeats = sorted(spend)
        summary[customer] = {
            "frequency": len(repeats),
            "recency": (repeats[-1] - first).days if repeats else 0,
            "T": (end - first).days,
            "monetary": str(
                (sum((spend[d] for d in repeats), Decimal(0)) / len(repeats)).quantize(
                    Decimal("0.01")
                )
            )
            if repeats
            else "0.00",
        }
    if not summary:
        return {}
    r = _quintiles({c: -(s["T"] - s["recency"]) for c, s in summary.items()})
    f = _quintiles({c: s["frequency"] for c, s in summary.items()})
    m = _quintiles({c: Decimal(s["monetary"]) for c, s in summary.items()})
    for customer, row in summary.items():
        row |= {"r": r[customer], "f": f[customer], "m": m[customer]}
        row["group"] = next(
            (name for name, rs, fs in GROUPS if row["r"] in rs and row["f"] in fs),
            "needs_attention",
        )
    return summary
