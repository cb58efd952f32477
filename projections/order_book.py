"""A customer's kept orders and liveness, folded from their events: the shared part of the read
models that keep per-order facts (:mod:`projections.customer_value`,
:mod:`projections.recommendations`).

``customer.registered`` makes the customer live; a purchase adds the row its read model makes
of it; a refund removes the order; ``customer.merged_into`` ends the duplicate's life (the
survivor's ``customer.duplicate_absorbed`` moves the orders, which each read model applies
itself, since it needs the duplicate's rows); ``customer.unmerged`` gives the duplicate its
life back and takes the moved orders off the survivor; ``customer.erased`` ends the customer
and their orders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from infra.envelope import Envelope

Row = TypeVar("Row")


@dataclass
class OrderBook(Generic[Row]):
    """``live`` and ``orders`` (order id → the read model's row) of one customer."""

    live: bool = False
    orders: dict[str, Row] = field(default_factory=dict)

    def fold(self, e: Envelope, row: Callable[[Envelope], Row | None]) -> None:
        """Apply ``e``; ``row`` makes a purchase's row (None: the order is not kept)."""
        data = e.data
        if e.type == "customer.registered":
            self.live = True
        elif e.type == "customer.purchase_recorded":
            if (made := row(e)) is not None:
                self.orders[data["order_id"]] = made
        elif e.type == "customer.purchase_refunded":
            self.orders.pop(data["order_id"], None)
        elif e.type == "customer.merged_into":
            self.live = False
        elif e.type == "customer.unmerged":
            if data["role"] == "duplicate":
                self.live = True
            for order_id in data["purchases"]:
                self.orders.pop(order_id, None)
        elif e.type == "customer.erased":
            self.live = False
            self.orders.clear()
