"""Campaign members and their purchases: what campaign results are computed from (issue 19).

* ``customer.campaign_targeted`` adds a row to ``campaign_members`` (campaign, customer, group,
  exposure = the event's business time, lifecycle stage and RFM group at exposure);
* ``customer.purchase_recorded`` of a customer who is a member of some campaign adds a row to
  ``campaign_purchases`` (amount, currency, business time, line-item categories and skus);
  ``customer.purchase_refunded`` removes it (a refunded order never converts);
* ``customer.campaign_outcome_recorded`` adds ``(campaign, customer, outcome)`` to
  ``campaign_outcomes`` with the earliest business time it was reported at (delivery and
  engagement: each outcome counts a member once, from that time on);
* ``customer.erased`` marks the customer's memberships ``erased``: they leave audiences and
  exports, but their rows keep counting in results (sizes, conversions, revenue), which hold
  no personal data, so published results do not change;
* ``customer.merged_into`` marks a merged duplicate's memberships ``merged``: they leave
  audiences and exports (the survivor is the person now) and keep counting in results;
  ``customer.unmerged`` on the duplicate's side clears the mark, so the member is back as it
  was (same group, exposure and breakdown keys).

Results are computed when asked (:func:`results`), as of any business time, from these rows
and the campaign's conversion definition: every row is a function of one customer's events in
version order, so live tables equal a rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from domain.campaign import CONTROL, TREATMENT
from domain.values import utc_text
from infra.envelope import Envelope
from infra.read_tx import Tx
from infra.sql_chunks import among
from projections.framework import Projector

TARGETED = "customer.campaign_targeted"
OUTCOME = "customer.campaign_outcome_recorded"


class CampaignsProjector(Projector):
    """Keeps ``campaign_members`` and ``campaign_purchases``; see the module docstring."""

    name = "campaigns"
    schema_version = 2  # 2: members' ``merged`` mark, outcomes' business time
    tables = ("campaign_members", "campaign_purchases", "campaign_outcomes")
    handles = frozenset(
        {
            TARGETED,
            OUTCOME,
            "customer.purchase_recorded",
            "customer.purchase_refunded",
            "customer.erased",
            "customer.merged_into",
            "customer.unmerged",
        }
    )
    schema = (
        """CREATE TABLE IF NOT EXISTS {campaign_members} (
            campaign_id TEXT NOT NULL, customer_id TEXT NOT NULL, grp TEXT NOT NULL,
            exposed_at TEXT NOT NULL, lifecycle_stage TEXT NOT NULL, rfm_group TEXT,
            erased INTEGER NOT NULL, merged INTEGER NOT NULL, position BIGINT NOT NULL,
            PRIMARY KEY (campaign_id, customer_id))""",
        "CREATE INDEX IF NOT EXISTS {campaign_members}_customer_idx ON {campaign_members} (customer_id)",
        """CREATE TABLE IF NOT EXISTS {campaign_purchases} (
            customer_id TEXT NOT NULL, order_id TEXT NOT NULL, occurred_at TEXT NOT NULL,
            amount TEXT NOT NULL, currency TEXT NOT NULL, categories TEXT NOT NULL,
            skus TEXT NOT NULL, PRIMARY KEY (customer_id, order_id))""",
        """CREATE TABLE IF NOT EXISTS {campaign_outcomes} (
            campaign_id TEXT NOT NULL, customer_id TEXT NOT NULL, outcome TEXT NOT NULL,
            occurred_at TEXT NOT NULL, PRIMARY KEY (campaign_id, customer_id, outcome))""",
    )

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        keys = sorted({e.customer_key for e in envelopes})
        members = {
            row[0]
            for condition, params in among(tx, "customer_id", keys)
            for row in tx.fetchall(
                f"SELECT DISTINCT customer_id FROM {{campaign_members}} WHERE {condition}", params
            )
        }
        for e in envelopes:
            key = e.customer_key
            if e.type == TARGETED:
                members.add(key)
                d = e.data
                tx.execute(
                    "INSERT INTO {campaign_members} (campaign_id, customer_id, grp, exposed_at, "
                    "lifecycle_stage, rfm_group, erased, merged, position) VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?)",
                    (
                        d["campaign_id"],
                        key,
                        d["group"],
                        utc_text(e.occurred_at),
                        d["lifecycle_stage"],
                        d["rfm_group"],
                        e.position,
                    ),
                )
            elif key not in members:
                continue
            elif e.type == "customer.purchase_recorded":
                items = [i for i in e.data.get("items") or [] if isinstance(i, dict)]
                tx.execute(
                    "INSERT INTO {campaign_purchases} (customer_id, order_id, occurred_at, amount, "
                    "currency, categories, skus) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        e.data["order_id"],
                        utc_text(e.occurred_at),
                        str(e.data["amount"]),
                        e.data["currency"],
                        _labels(items, "category"),
                        _labels(items, "sku"),
                    ),
                )
            elif e.type == OUTCOME:
                tx.execute(
                    "INSERT INTO {campaign_outcomes} (campaign_id, customer_id, outcome, "
                    "occurred_at) VALUES (?, ?, ?, ?) ON CONFLICT (campaign_id, customer_id, "
                    "outcome) DO UPDATE SET occurred_at = excluded.occurred_at "
                    "WHERE excluded.occurred_at < {campaign_outcomes}.occurred_at",
                    (e.data["campaign_id"], key, e.data["outcome"], utc_text(e.occurred_at)),
                )
            elif e.type == "customer.purchase_refunded":
                tx.execute(
                    "DELETE FROM {campaign_purchases} WHERE customer_id = ? AND order_id = ?",
                    (key, e.data["order_id"]),
                )
            elif e.type == "customer.erased":
                tx.execute("UPDATE {campaign_members} SET erased = 1 WHERE customer_id = ?", (key,))
            elif e.type == "customer.merged_into" or e.data.get("role") == "duplicate":
                merged = int(e.type == "customer.merged_into")
                tx.execute(
                    "UPDATE {campaign_members} SET merged = ? WHERE customer_id = ?", (merged, key)
                )


def _labels(items: list[dict[str, Any]], key: str) -> str:
    return orjson.dumps(
        sorted({str(i[key]) for i in items if isinstance(i.get(key), str)})
    ).decode()


@dataclass(frozen=True)
class Member:
    """One member as results see it: group, exposure, breakdown keys, and what they brought
    within the conversion window (``converted``, ``revenue`` in the conversion currency)."""

    customer_id: str
    group: str
    exposed_at: datetime
    lifecycle_stage: str
    rfm_group: str | None
    converted: bool
    revenue: Decimal


def members_as_of(
    tx: Tx, campaign_id: str, conversion: dict[str, Any], as_of: datetime | None
) -> list[Member]:
    """Every member exposed at or before ``as_of`` (all, when None) with their conversion: a
    purchase at or after exposure, within ``conversion.window_days``, at or before ``as_of``,
    in ``conversion.currency``, of at least ``min_amount``, with a line item of ``category``
    / ``sku`` when given. Revenue sums the qualifying purchases."""
    limit = utc_text(as_of) if as_of is not None else "9999"
    rows = tx.fetchall(
        "SELECT customer_id, grp, exposed_at, lifecycle_stage, rfm_group FROM {campaign_members} "
        "WHERE campaign_id = ? AND exposed_at <= ? ORDER BY customer_id",
        (campaign_id, limit),
    )
    bought: dict[str, list[tuple[str, Decimal]]] = {}
    for customer, at, amount, categories, skus in tx.fetchall(
        "SELECT p.customer_id, p.occurred_at, p.amount, p.categories, p.skus "
        "FROM {campaign_purchases} p JOIN {campaign_members} m ON m.customer_id = p.customer_id "
        "WHERE m.campaign_id = ? AND p.currency = ? AND p.occurred_at >= m.exposed_at "
        "AND p.occurred_at <= ?",
        (campaign_id, conversion["currency"], limit),
    ):
        if _qualifies(conversion, Decimal(amount), categories, skus):
            bought.setdefault(customer, []).append((at, Decimal(amount)))
    window = timedelta(days=conversion["window_days"])
    found = []
    for customer, group, exposed, stage, rfm_group in rows:
        exposed_at = datetime.fromisoformat(exposed)
        end = utc_text(exposed_at + window)
        amounts = [amount for at, amount in bought.get(customer, []) if at < end]
        found.append(
            Member(
                customer,
                group,
                exposed_at,
                stage,
                rfm_group,
                bool(amounts),
                sum(amounts, Decimal(0)),
            )
        )
    return found


def _qualifies(conversion: dict[str, Any], amount: Decimal, categories: str, skus: str) -> bool:
    if conversion["min_amount"] is not None and amount < Decimal(conversion["min_amount"]):
        return False
    if conversion["category"] is not None and conversion["category"] not in orjson.loads(
        categories
    ):
        return False
    return conversion["sku"] is None or conversion["sku"] in orjson.loads(skus)


def audience(
    tx: Tx, campaign_id: str, *, group: str | None = TREATMENT, after: str = "", limit: int = 100
) -> list[tuple[str, str]]:
    """``(customer_id, group)`` of live members (neither erased nor merged into another
    customer) after the customer id ``after``, by customer id (one group, or both when
    ``group`` is None)."""
    groups = (TREATMENT, CONTROL) if group is None else (group,)
    rows = tx.fetchall(
        "SELECT customer_id, grp FROM {campaign_members} WHERE campaign_id = ? AND erased = 0 "
        "AND merged = 0 "
        f"AND customer_id > ? AND grp IN ({', '.join('?' * len(groups))}) "
        "ORDER BY customer_id LIMIT ?",
        (campaign_id, after, *groups, limit),
    )
    return [(str(c), str(g)) for c, g in rows]


def member_count(tx: Tx, campaign_id: str) -> int:
    """Members of ``campaign_id`` held so far, erased ones included: equal to the launch's
    treatment plus control once this read model has applied the whole launch."""
    row = tx.fetchone(
        "SELECT COUNT(*) FROM {campaign_members} WHERE campaign_id = ?", (campaign_id,)
    )
    return int(row[0]) if row is not None else 0


def outcomes(tx: Tx, campaign_id: str, as_of: datetime | None = None) -> dict[str, int]:
    """Members with each outcome reported (business time) at or before ``as_of`` (ever, when
    None): ``{"delivered": 812, …}``."""
    rows = tx.fetchall(
        "SELECT outcome, COUNT(*) FROM {campaign_outcomes} WHERE campaign_id = ? "
        "AND occurred_at <= ? GROUP BY outcome",
        (campaign_id, "9999" if as_of is None else utc_text(as_of)),
    )
    return {str(outcome): int(count) for outcome, count in rows}
