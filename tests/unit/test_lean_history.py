"""Time travel's lean read path (:mod:`infra.lean_history`) answers exactly as the long way did,
on the in-memory and SQLite backends (PostgreSQL: ``tests/integration/test_lean_history.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from infra.store import EventStore
from tests.lean_history_support import (
    assert_a_moved_token_is_refused,
    assert_travel_as_the_long_way,
)


@pytest.fixture(params=["memory", "sqlite"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url, snapshot_interval=5)
    yield store
    store.close()


def test_time_travel_answers_as_the_long_way(any_store: EventStore) -> None:
    assert_travel_as_the_long_way(any_store)


def test_a_moved_sealed_token_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    try:
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
        assert_a_moved_token_is_refused(store, url, customer.customer_id)
    finally:
        store.close()
