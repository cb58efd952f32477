"""Time travel's lean read path (:mod:`infra.lean_history`) answers exactly as the long way did,
on the in-memory and SQLite backends (PostgreSQL: ``tests/integration/test_lean_history.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.store import EventStore
from tests.lean_history_support import (
    a_customer_with_contacts,
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
        assert_a_moved_token_is_refused(store, url, a_customer_with_contacts(store))
    finally:
        store.close()
