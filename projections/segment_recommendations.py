"""The segment field ``recommendations.top3``: the items a customer's top 3 recommendations are.

A top 3 depends on every contributing customer's purchases (ADR 0012), so, like RFM ranks,
the segments read model decides it from its own folds at recorded moments, never per event
(reading the ``recommend`` read model would break a segments-only rebuild):

* each customer's fold (``segment_state``) keeps ``order_items``, the items of their own orders
  (order id → sorted ``[sku, category]``, as :func:`projections.recommendations.order_items`
  makes them); a
  refund removes the order, an erasure all of them (a merged duplicate's stay: the survivor
  holds those orders);
* when segments reading ``recommendations.*`` are decided for everyone (their definition, a
  ``segments.refreshed``, and any other decision for everyone that includes them),
  :func:`keep_top3` ranks every contributing customer's recommendations from the baskets of
  all of them (:func:`domain.recommend.rank_all`, the same counts, scores and category
  fallback as ``GET /v1/customers/{id}/recommendations``) and keeps the top 3 in
  ``segment_recs``;
* between those moments a customer's events use the kept top 3 (:func:`with_top3`); without
  the ``profiling`` consent, or not live, a customer has no ``recommendations`` at all, so
  such a condition never matches them (a withdrawal takes them out at once).

A basket is the items of the orders a live customer holds: their own, and those a merge moved
to them (found in the merged duplicates' ``order_items``, through chains of merges).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from domain.recommend import rank_all
from domain.segment_rules import MEMBER_STATUSES
from infra.envelope import Envelope
from infra.read_tx import Tx
from projections.recommendations import PROFILING, order_items
from projections.segment_rows import by_customer

TOP = 3
TABLE = "segment_recs"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {segment_recs} (customer_id TEXT PRIMARY KEY, top3 TEXT NOT NULL)"
)


def fold_skus(state: dict[str, Any], e: Envelope) -> None:
    """Keep ``state["order_items"]`` up to date with ``e`` (already folded into ``state``)."""
    kept: dict[str, list[list[str | None]]] = state.setdefault("order_items", {})
    if e.type == "customer.purchase_recorded":
        items = order_items(e)
        if items is None:
            kept.pop(e.data["order_id"], None)
        else:
            kept[e.data["order_id"]] = items
    elif e.type == "customer.purchase_refunded":
        kept.pop(e.data["order_id"], None)
    elif e.type == "customer.erased" and state.get("merged_into") is None:
        kept.clear()


def contributes(state: Mapping[str, Any]) -> bool:
    """Live (active or churned) with the ``profiling`` consent granted."""
    return (
        state.get("status") in MEMBER_STATUSES and state.get("consents", {}).get(PROFILING) is True
    )


Item = tuple[str, str | None]  # (sku, category)


def baskets(states: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, frozenset[Item]]:
    """The items each contributing customer holds (see the module docstring)."""
    own: dict[str, Mapping[str, list[list[str | None]]]] = {}
    absorbed: dict[str, list[str]] = {}
    holding: dict[str, list[str]] = {}
    for customer, state in states:
        own[customer] = state.get("order_items", {})
        if state.get("merged_into"):
            absorbed.setdefault(state["merged_into"], []).append(customer)
        if contributes(state):
            holding[customer] = list(state.get("orders", {}))

    def items(customer: str, order: str, seen: frozenset[str]) -> list[list[str | None]]:
        if order in own.get(customer, {}):
            return own[customer][order]
        for duplicate in absorbed.get(customer, ()):
            if duplicate not in seen and (found := items(duplicate, order, seen | {duplicate})):
                return found
        return []

    found = {}
    for customer, orders in holding.items():
        basket = frozenset(
            (str(i[0]), i[1]) for o in orders for i in items(customer, o, frozenset({customer}))
        )
        if basket:
            found[customer] = basket
    return found


def keep_top3(tx: Tx, states: Iterator[list[tuple[str, dict[str, Any]]]]) -> dict[str, list[str]]:
    """Rank every contributing customer's top 3 from ``states`` (every customer's fold, in
    chunks), keep them in ``segment_recs`` (replacing the last ranking) and return them
    (customer id → skus; as :func:`load_top3` would read them back)."""
    ranked = rank_all(baskets(row for rows in states for row in rows), TOP)
    tx.execute("DELETE FROM {segment_recs}")
    tx.insert(
        TABLE,
        ("customer_id", "top3"),
        [(c, orjson.dumps(top).decode()) for c, top in sorted(ranked.items())],
    )
    return ranked


def load_top3(tx: Tx, customer_ids: Sequence[str]) -> dict[str, list[str]]:
    """The kept top 3 of some customers (absent: nothing recommended at the last ranking)."""
    select = "SELECT customer_id, top3 FROM {segment_recs}"
    return {c: orjson.loads(top) for c, top in by_customer(tx, select, customer_ids)}


def with_top3(state: Mapping[str, Any], top3: Sequence[str] | None) -> Mapping[str, Any]:
    """A segments profile fold with ``recommendations: {top3: [sku, …]}`` (for rules on
    ``recommendations.top3``) if the customer contributes; else ``state`` unchanged."""
    if not contributes(state):
        return state
    return {**state, "recommendations": {"top3": list(top3 or [])}}
