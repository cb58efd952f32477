"""The recommendations read model: co-purchase counts of line items' ``sku``, kept as events come.

Definitions and scoring live in :mod:`domain.recommend` (ADR 0012). Tables:

* ``recs_customers`` — per customer, ``live`` (active or churned: not merged, not erased) and
  ``consent`` (the ``profiling`` consent is granted);
* ``recs_orders`` — per customer and held order, the distinct ``sku`` of its items (a JSON
  list; orders without a sku are not kept). A refund removes the order, a merge copies the
  duplicate's orders it moved to the survivor (``duplicate_absorbed`` names them), an unmerge
  removes what it gives back, an erasure removes them all;
* ``recs_items`` (``n(i)``), ``recs_pairs`` (``n(i, j)``, both orders) and ``recs_totals``
  (contributing customers) — count tables (:mod:`projections.counts`) over the customers who
  contribute: live ones with profiling consent, with every sku of their orders.

A merge reads the duplicate's orders from ``recs_orders``, a fact of another customer, so the
projection is fed (and rebuilt) in log order (``Projector.log_order``); every count is a sum
over customers, so live equals a rebuild.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from domain.recommend import Recommendation, item_deltas, pair_deltas, recommend
from domain.values import ConsentPurpose
from infra.envelope import Envelope
from infra.readstore import Tx
from projections.counts import add_counts
from projections.framework import Projector
from projections.order_book import OrderBook

CHUNK = 500
PROFILING = ConsentPurpose.PROFILING.value


@dataclass
class _State(OrderBook[list[str]]):
    """Orders kept as their sorted skus, and the profiling consent."""

    consent: bool = False

    def contributes(self) -> frozenset[str]:
        """The skus this customer adds to the counts (none unless live with consent)."""
        if not (self.live and self.consent):
            return frozenset()
        return frozenset(sku for skus in self.orders.values() for sku in skus)


class RecommendationsProjector(Projector):
    """Keeps co-purchase counts from purchases, refunds, merges, consent and erasure."""

    name = "recommend"
    tables = ("recs_customers", "recs_orders", "recs_items", "recs_pairs", "recs_totals")
    schema = (
        """CREATE TABLE IF NOT EXISTS {recs_customers} (
            customer_id TEXT PRIMARY KEY, live INTEGER NOT NULL, consent INTEGER NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS {recs_orders} (
            customer_id TEXT NOT NULL, order_id TEXT NOT NULL, skus TEXT NOT NULL,
            PRIMARY KEY (customer_id, order_id))""",
        """CREATE TABLE IF NOT EXISTS {recs_items} (
            sku TEXT PRIMARY KEY, customers BIGINT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS {recs_pairs} (
            sku TEXT NOT NULL, paired TEXT NOT NULL, customers BIGINT NOT NULL,
            PRIMARY KEY (sku, paired))""",
        """CREATE TABLE IF NOT EXISTS {recs_totals} (
            scope TEXT PRIMARY KEY, customers BIGINT NOT NULL)""",
    )
    handles = frozenset(
        {
            "customer.registered",
            "customer.consent_granted",
            "customer.consent_withdrawn",
            "customer.purchase_recorded",
            "customer.purchase_refunded",
            "customer.duplicate_absorbed",
            "customer.merged_into",
            "customer.unmerged",
            "customer.erased",
        }
    )
    log_order = True  # a merge reads the duplicate's orders

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        states = _load(tx, sorted({e.customer_key for e in envelopes}))
        before = {k: s.contributes() for k, s in states.items()}
        for e in envelopes:
            state = states[e.customer_key]
            if e.type == "customer.duplicate_absorbed":
                duplicate = e.data["duplicate_id"]
                if duplicate not in states:
                    states.update(_load(tx, [duplicate]))
                    before[duplicate] = states[duplicate].contributes()
                moved = states[duplicate].orders
                state.orders.update({o: moved[o] for o in e.data["purchases"] if o in moved})
            else:
                _fold(state, e)
        after = {k: s.contributes() for k, s in states.items()}
        items: Counter[tuple[str]] = Counter()
        pairs: Counter[tuple[str, str]] = Counter()
        totals: Counter[tuple[str]] = Counter()
        for key in sorted(states):
            old, new = before[key], after[key]
            if old != new:
                items.update({(sku,): n for sku, n in item_deltas(old, new).items()})
                pairs.update(pair_deltas(old, new))
                totals[("all",)] += bool(new) - bool(old)
        _save(tx, states)
        add_counts(tx, "recs_items", ("sku",), "customers", items)
        add_counts(tx, "recs_pairs", ("sku", "paired"), "customers", pairs)
        add_counts(tx, "recs_totals", ("scope",), "customers", totals)


def _fold(state: _State, e: Envelope) -> None:
    if e.type in ("customer.consent_granted", "customer.consent_withdrawn"):
        if e.data["purpose"] == PROFILING:
            state.consent = e.type == "customer.consent_granted"
    else:
        state.fold(e, _skus)


def _skus(e: Envelope) -> list[str] | None:
    """The order's sorted skus (None: no item names one, so it adds nothing)."""
    items = e.data.get("items") or []
    return sorted({i["sku"] for i in items if i.get("sku") is not None}) or None


def _load(tx: Tx, ids: list[str]) -> dict[str, _State]:
    found = {c: _State() for c in ids}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        marks = ",".join("?" * len(chunk))
        for customer, live, consent in tx.fetchall(
            f"SELECT customer_id, live, consent FROM {{recs_customers}} "
            f"WHERE customer_id IN ({marks})",
            chunk,
        ):
            found[customer].live, found[customer].consent = bool(live), bool(consent)
        for customer, order_id, skus in tx.fetchall(
            f"SELECT customer_id, order_id, skus FROM {{recs_orders}} WHERE customer_id IN ({marks})",
            chunk,
        ):
            found[customer].orders[order_id] = orjson.loads(skus)
    return found


def _save(tx: Tx, states: dict[str, _State]) -> None:
    ids = sorted(states)
    tx.upsert(
        "recs_customers",
        ("customer_id",),
        ("customer_id", "live", "consent"),
        [(c, int(states[c].live), int(states[c].consent)) for c in ids],
    )
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        tx.execute(
            f"DELETE FROM {{recs_orders}} WHERE customer_id IN ({','.join('?' * len(chunk))})",
            chunk,
        )
    rows = [
        (c, order_id, orjson.dumps(skus).decode())
        for c in ids
        for order_id, skus in sorted(states[c].orders.items())
    ]
    tx.insert("recs_orders", ("customer_id", "order_id", "skus"), rows)


# ------------------------------------------------------------------------------ queries


@dataclass(frozen=True)
class Answer:
    """A customer's recommendations, or why there are none (``reason``)."""

    owned: tuple[str, ...]
    items: list[Recommendation]
    reason: str | None
    contributors: int

    def view(self) -> dict[str, Any]:
        return {
            "personalised": self.reason is None,
            "reason": self.reason,
            "owned": list(self.owned),
            "items": [r.view() for r in self.items],
            "model": {"measure": "cosine", "customers": self.contributors},
        }


NO_CONSENT = "no-profiling-consent"
NOTHING_BOUGHT = "no-items-bought"


def for_customer(tx: Tx, customer_id: str, limit: int) -> Answer:
    """The top ``limit`` recommendations of a live customer; none, with a ``reason``, without
    profiling consent (:data:`NO_CONSENT`: nothing about them is read) or without an item
    bought (:data:`NOTHING_BOUGHT`)."""
    row = tx.fetchone("SELECT customers FROM {recs_totals} WHERE scope = 'all'")
    contributors = int(row[0]) if row else 0
    state = _load(tx, [customer_id])[customer_id]
    if not state.consent:
        return Answer((), [], NO_CONSENT, contributors)
    owned = sorted(state.contributes())
    if not owned:
        return Answer((), [], NOTHING_BOUGHT, contributors)
    pairs: list[tuple[str, str, int]] = []
    for start in range(0, len(owned), CHUNK):
        chunk = owned[start : start + CHUNK]
        pairs += [
            (sku, paired, int(n))
            for sku, paired, n in tx.fetchall(
                f"SELECT sku, paired, customers FROM {{recs_pairs}} "
                f"WHERE sku IN ({','.join('?' * len(chunk))})",
                chunk,
            )
        ]
    named = sorted({s for _, s, _ in pairs} | set(owned))
    counts: dict[str, int] = {}
    for start in range(0, len(named), CHUNK):
        chunk = named[start : start + CHUNK]
        counts.update(
            (sku, int(n))
            for sku, n in tx.fetchall(
                f"SELECT sku, customers FROM {{recs_items}} "
                f"WHERE sku IN ({','.join('?' * len(chunk))})",
                chunk,
            )
        )
    return Answer(tuple(owned), recommend(owned, pairs, counts, limit), None, contributors)
