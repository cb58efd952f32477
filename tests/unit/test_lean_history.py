"""Time travel's lean read path (:mod:`infra.lean_history`) answers exactly as the long way did,
on the in-memory and SQLite backends (PostgreSQL: ``tests/integration/test_lean_history.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.store import EventStore
from tests.lean_history_support import (
    a_customer_with_contacts,
    assert_a_moved_token_is_refused,
    assert_an_erasure_elsewhere_is_forgotten,
    assert_travel_as_the_long_way,
)


def test_time_travel_answers_as_the_long_way(any_store: EventStore) -> None:
    assert_travel_as_the_long_way(any_store)


def test_a_moved_sealed_token_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    try:
        assert_a_moved_token_is_refused(store, url, a_customer_with_contacts(store))
    finally:
        store.close()


def test_an_erasure_by_another_process_is_forgotten_with_the_history_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    here, elsewhere = EventStore(url), EventStore(url)
    try:
        assert_an_erasure_elsewhere_is_forgotten(here, elsewhere, monkeypatch)
    finally:
        here.close()
        elsewhere.close()
