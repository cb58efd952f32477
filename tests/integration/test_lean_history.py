"""Time travel's lean read path answers exactly as the long way did, on PostgreSQL (the unit
suite runs the same comparison on the in-memory and SQLite backends)."""

from __future__ import annotations

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from infra.store import EventStore
from tests.lean_history_support import (
    assert_a_moved_token_is_refused,
    assert_travel_as_the_long_way,
)


@pytest.mark.backends("postgres")
def test_time_travel_answers_as_the_long_way(store: EventStore) -> None:
    assert_travel_as_the_long_way(store)


@pytest.mark.backends("postgres")
def test_a_moved_sealed_token_is_refused(store: EventStore, database_url: str) -> None:
    service = CommandService(store, default_region="DE", index_key="k")
    ctx = Context(actor="t")
    customer = service.execute(m.RegisterCustomer(name="Ada", email="ada@example.com"), ctx)
    assert customer.customer_id is not None
    service.execute(
        m.RecordContact(
            customer_id=customer.customer_id, channel="email", direction="inbound", summary="hi"
        ),
        ctx,
    )
    assert_a_moved_token_is_refused(store, database_url, customer.customer_id)
