"""Time travel's lean read path answers exactly as the long way did, on PostgreSQL (the unit
suite runs the same comparison on the in-memory and SQLite backends)."""

from __future__ import annotations

import pytest

from infra.store import EventStore
from tests.lean_history_support import (
    a_customer_with_contacts,
    assert_a_moved_token_is_refused,
    assert_an_erasure_elsewhere_is_forgotten,
    assert_travel_as_the_long_way,
)


@pytest.mark.backends("postgres")
def test_time_travel_answers_as_the_long_way(store: EventStore) -> None:
    assert_travel_as_the_long_way(store)


@pytest.mark.backends("postgres")
def test_a_moved_sealed_token_is_refused(store: EventStore, database_url: str) -> None:
    assert_a_moved_token_is_refused(store, database_url, a_customer_with_contacts(store))


@pytest.mark.backends("postgres")
def test_an_erasure_by_another_process_is_forgotten_with_the_history_read(
    store: EventStore, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = EventStore(database_url)
    try:
        assert_an_erasure_elsewhere_is_forgotten(store, elsewhere, monkeypatch)
    finally:
        elsewhere.close()
