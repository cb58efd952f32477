"""The recommendations read model: co-purchase counts of line items' ``sku``, kept as events come.

Definitions and scoring live in :mod:`domain.recommend` (ADR 0012). Tables:

* ``recs_customers`` — per customer, ``live`` (active or churned: not merged, not erased) and
  ``consent`` (the ``profiling`` consent is granted);
* ``recs_orders`` — per customer and held order, the distinct ``[sku, category]`` of its items
  (a JSON list, category null when the item has none; orders without a sku are not kept). A refund removes the order, a merge copies the
  duplicate's orders it moved to the survivor (``duplicate_absorbed`` names them), an unmerge
  removes what it gives back, an erasure removes them all;
* ``recs_items`` (``n(i)``), ``recs_pairs`` (``n(i, j)``, both orders) and ``recs_totals``
  (contributing customers) — count tables (:mod:`projections.counts`) over the customers who
  contribute: live ones with profiling consent, with every sku of their orders;
* ``recs_categories`` (``n_c``) and ``recs_category_items`` (``n_c(j)``) — the same customers
  counted by the categories of their items, for the category fallback.

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

from domain.recommend import (
    Recommendation,
    by_category,
    item_deltas,
    labels,
    pair_deltas,
    recommend,
)
from domain.values import ConsentPurpose
from infra.envelope import Envelope
from infra.read_tx import Tx
from infra.sql_chunks import among
from projections.counts import add_counts
from projections.framework import MERGES, Projector
from projections.order_book import OrderBook

PROFILING = ConsentPurpose.PROFILING.value


Item = tuple[str, str | None]  # (sku, category)


@dataclass
class _State(OrderBook[list[list[str | None]]]):
    """Orders kept as their sorted ``[sku, category]`` items, and the profiling consent."""

    consent: bool = False

    def contributes(self) -> frozenset[Item]:
        """The items this customer adds to the counts (none unless live with consent)."""
        if not (self.live and self.consent):
            return frozenset()
        return frozenset((str(i[0]), i[1]) for items in self.orders.values() for i in items)


class RecommendationsProjector(Projector):
    """Keeps co-purchase counts from purchases, refunds, merges, consent and erasure."""

    name = "recommend"
    schema_version = 2  # 2: items' categories kept and counted (the category fallback)
    tables = (
        "recs_customers",
        "recs_orders",
        "recs_items",
        "recs_pairs",
        "recs_totals",
        "recs_categories",
        "recs_category_items",
    )
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
        """CREATE TABLE IF NOT EXISTS {recs_categories} (
            category TEXT PRIMARY KEY, customers BIGINT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS {recs_category_items} (
            category TEXT NOT NULL, sku TEXT NOT NULL, customers BIGINT NOT NULL,
            PRIMARY KEY (category, sku))""",
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
    crosses = MERGES

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
        categories: Counter[tuple[str]] = Counter()
        in_category: Counter[tuple[str, str]] = Counter()
        for key in sorted(states):
            old, new = before[key], after[key]
            if old != new:
                old_skus, new_skus = _skus(old), _skus(new)
                items.update({(sku,): n for sku, n in item_deltas(old_skus, new_skus).items()})
                pairs.update(pair_deltas(old_skus, new_skus))
                totals[("all",)] += bool(new) - bool(old)
                changed = item_deltas(labels(old), labels(new))
                categories.update({(c,): n for c, n in changed.items()})
                in_category.update(item_deltas(_labelled(old), _labelled(new)))
        _save(tx, states)
        add_counts(tx, "recs_items", ("sku",), "customers", items)
        add_counts(tx, "recs_pairs", ("sku", "paired"), "customers", pairs)
        add_counts(tx, "recs_totals", ("scope",), "customers", totals)
        add_counts(tx, "recs_categories", ("category",), "customers", categories)
        add_counts(tx, "recs_category_items", ("category", "sku"), "customers", in_category)


def _skus(items: frozenset[Item]) -> frozenset[str]:
    return frozenset(sku for sku, _ in items)


def _labelled(items: frozenset[Item]) -> frozenset[tuple[str, str]]:
    """``(category, sku)`` of the items with a category."""
    return frozenset((c, sku) for sku, c in items if c is not None)


def _fold(state: _State, e: Envelope) -> None:
    if e.type in ("customer.consent_granted", "customer.consent_withdrawn"):
        if e.data["purpose"] == PROFILING:
            state.consent = e.type == "customer.consent_granted"
    else:
        state.fold(e, order_items)


def order_items(e: Envelope) -> list[list[str | None]] | None:
    """The order's distinct ``[sku, category]`` items, sorted (category None when the item has
    none; None: no item names a sku, so the order adds nothing)."""
    items = e.data.get("items") or []
    found = {(i["sku"], i.get("category")) for i in items if i.get("sku") is not None}
    return [[sku, c] for sku, c in sorted(found, key=lambda i: (i[0], i[1] or ""))] or None


def _load(tx: Tx, ids: list[str]) -> dict[str, _State]:
    found = {c: _State() for c in ids}
    for condition, params in among(tx, "customer_id", ids):
        for customer, live, consent in tx.fetchall(
            f"SELECT customer_id, live, consent FROM {{recs_customers}} WHERE {condition}",
            params,
        ):
            found[customer].live, found[customer].consent = bool(live), bool(consent)
        for customer, order_id, skus in tx.fetchall(
            f"SELECT customer_id, order_id, skus FROM {{recs_orders}} WHERE {condition}", params
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
    for condition, params in among(tx, "customer_id", ids):
        tx.execute(f"DELETE FROM {{recs_orders}} WHERE {condition}", params)
    rows = [
        (c, order_id, orjson.dumps(skus).decode())
        for c in ids
        for order_id, skus in sorted(states[c].orders.items())
    ]
    tx.insert("recs_orders", ("customer_id", "order_id", "skus"), rows)


# ------------------------------------------------------------------------------ queries


@dataclass(frozen=True)
class Answer:
    """A customer's recommendations, or why there are none (``reason``); ``basis`` says which
    computation found the items (``co-purchase``, else the ``category`` fallback)."""

    owned: tuple[str, ...]
    items: list[Recommendation]
    reason: str | None
    contributors: int
    basis: str | None = None

    def view(self) -> dict[str, Any]:
        return {
            "personalised": self.reason is None,
            "reason": self.reason,
            "owned": list(self.owned),
            "basis": self.basis,
            "items": [r.view() for r in self.items],
            "model": {"measure": "cosine", "customers": self.contributors},
        }


NO_CONSENT = "no-profiling-consent"
NOTHING_BOUGHT = "no-items-bought"


def for_customer(tx: Tx, customer_id: str, limit: int) -> Answer:
    """The top ``limit`` recommendations of a live customer (co-purchase; the category
    fallback when their items have no co-purchase evidence); none, with a ``reason``, without
    profiling consent (:data:`NO_CONSENT`: nothing about them is read) or without an item
    bought (:data:`NOTHING_BOUGHT`)."""
    row = tx.fetchone("SELECT customers FROM {recs_totals} WHERE scope = 'all'")
    contributors = int(row[0]) if row else 0
    state = _load(tx, [customer_id])[customer_id]
    if not state.consent:
        return Answer((), [], NO_CONSENT, contributors)
    held = state.contributes()
    owned = sorted(_skus(held))
    if not owned:
        return Answer((), [], NOTHING_BOUGHT, contributors)
    pairs = [
        (sku, paired, int(n))
        for sku, paired, n in _rows(
            tx, "SELECT sku, paired, customers FROM {recs_pairs}", "sku", owned
        )
    ]
    named = sorted({s for _, s, _ in pairs} | set(owned))
    counts = {
        sku: int(n) for sku, n in _rows(tx, "SELECT sku, customers FROM {recs_items}", "sku", named)
    }
    found = recommend(owned, pairs, counts, limit)
    if found:
        return Answer(tuple(owned), found, None, contributors, "co-purchase")
    mine = sorted(labels(held))
    popular = [
        (c, sku, int(n))
        for c, sku, n in _rows(
            tx, "SELECT category, sku, customers FROM {recs_category_items}", "category", mine
        )
    ]
    sizes = {
        c: int(n)
        for c, n in _rows(tx, "SELECT category, customers FROM {recs_categories}", "category", mine)
    }
    found = by_category(owned, popular, sizes, limit)
    return Answer(tuple(owned), found, None, contributors, "category" if found else None)


def _rows(tx: Tx, select: str, column: str, keys: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows of ``select`` (no WHERE) whose ``column`` is one of ``keys``, in chunks."""
    rows: list[tuple[Any, ...]] = []
    for condition, params in among(tx, column, keys):
        rows += tx.fetchall(f"{select} WHERE {condition}", params)
    return rows
