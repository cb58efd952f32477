"""The relay's lean read path publishes exactly what the mapper's path publishes, on PostgreSQL
(the unit suite runs the same comparison on the in-memory and SQLite backends)."""

from __future__ import annotations

import pytest

from infra.store import EventStore
from tests.published_support import assert_published_as_by_the_mapper


@pytest.mark.backends("postgres")
def test_lean_path_publishes_the_same_bytes_as_the_mapper(store: EventStore) -> None:
    assert_published_as_by_the_mapper(store)
