"""Given-when-then for the ``Customer`` aggregate on its own, with no store and no service.

``given`` builds a history with the aggregate's own commands and rebuilds the customer from those
events alone; ``when`` runs one command on it and answers the new events as ``(type, data)``,
checking on the way that folding history plus new events gives exactly the state the command left
(the decided state is the fold of the log); ``rejected`` checks a refused command raises the
expected error and leaves no event behind (validate first, never half of a command's events).
The steps (``tag``, ``purchase``, ``churn``, ``earn``) are commands to build histories with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast
from uuid import UUID

import pytest

from domain import errors
from domain.customer import Customer
from domain.event_base import Meta
from domain.events import CustomerEvent

ADA = UUID(int=1)
DUPLICATE = UUID(int=2)
REGISTERED_AT = datetime(2024, 1, 1, 9, tzinfo=UTC)
LATER = REGISTERED_AT + timedelta(days=1)

Command = Callable[[Customer], object]
E = TypeVar("E", bound=errors.DomainError)
Emitted = list[tuple[str, dict[str, Any]]]


def meta(at: datetime = LATER) -> Meta:
    return Meta(actor="clerk", correlation_id="corr", causation_id=None, occurred_at=at)


def collected(customer: Customer) -> list[CustomerEvent]:
    """The events ``customer`` triggered since the last call (every one a customer event)."""
    return cast(list[CustomerEvent], customer.collect_events())


def fold(events: Sequence[CustomerEvent]) -> Customer:
    """The customer as the store would load it: each event applied in order, from nothing."""
    customer: Customer | None = None
    for event in events:
        customer = event.mutate(customer)
    assert customer is not None
    return customer


@dataclass(frozen=True)
class History:
    events: tuple[CustomerEvent, ...]

    def customer(self) -> Customer:
        return fold(self.events)


def given(*steps: Command, **registration: Any) -> History:
    """Ada registered (``registration`` overrides her fields), then ``steps`` in order."""
    customer = Customer.register(ADA, meta(REGISTERED_AT), **{"name": "Ada", **registration})
    for step in steps:
        step(customer)
    return History(tuple(collected(customer)))


def when(history: History, command: Command) -> Emitted:
    customer = history.customer()
    command(customer)
    new = collected(customer)
    assert vars(fold([*history.events, *new])) == vars(customer)
    return [(event.TYPE, event.data()) for event in new]


def rejected(history: History, command: Command, error: type[E]) -> E:
    customer = history.customer()
    with pytest.raises(error) as caught:
        command(customer)
    assert collected(customer) == []
    return caught.value


# ------------------------------------------------------------------------- helpers (steps)


def tag(name: str) -> Command:
    return lambda c: c.tag(meta(), name)


def purchase(order_id: str, amount: str = "12.50", currency: str = "EUR") -> Command:
    return lambda c: c.record_purchase(
        meta(), order_id=order_id, amount=Decimal(amount), currency=currency, items=[]
    )


def churn(c: Customer) -> object:
    c.churn(meta(), "moved away")
    return None


def earn(points: int) -> Command:
    return lambda c: c.earn_points(meta(), points, "order")
