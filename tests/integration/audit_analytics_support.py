"""The audit history and analytics read models' shared ground: both projectors, their tables
as a comparable snapshot, and a base class whose ``world`` fixture opens an event store, a read
store on the same database, a command service and an embedded runner feeding both projectors.

Subclassed by ``test_audit_analytics`` (two simulated years) and ``test_audit_history`` (hand-made
histories); every subclass runs on every store backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from commands.service import CommandService
from consumers.embedded import EmbeddedRunner
from consumers.store_feed import StoreFeed
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from projections import analytics, audit_history
from projections.framework import Projector, ensure_schema


def projectors() -> list[Projector]:
    return [audit_history.AuditHistoryProjector(), analytics.AnalyticsProjector()]


def tables(read_store: ReadStore) -> dict[str, list[tuple[Any, ...]]]:
    with read_store.transaction() as tx:
        return {
            t: sorted(tx.fetchall(f"SELECT * FROM {t}"), key=repr)
            for p in projectors()
            for t in p.all_tables()
        }


class AuditAnalyticsContract:
    """Fixtures only (no tests)."""

    @pytest.fixture
    def world(
        self, database_url: str
    ) -> Iterator[tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]]:
        store = EventStore(database_url)
        read_store = open_read_store(database_url)
        ensure_schema(read_store, projectors())
        runner = EmbeddedRunner(StoreFeed(store), read_store, projectors(), batch_size=500)
        yield store, read_store, CommandService(store, default_region="DE", index_key="k"), runner
        read_store.close()
        store.close()
