"""The segments read model contract's shared ground: the rules the tests define, and a base
class whose fixtures open the event store's database as the read store (profiles and segments
projected by an embedded runner) with helpers to run commands and read membership back.

Subclassed by ``test_segments`` (live membership and history) and ``test_segment_rebuild``
(rebuilds, migration and rebuild workers); every subclass runs on every store backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from commands import messages as m
from commands.segments import SegmentService
from commands.service import CommandService, Context, Outcome
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild
from consumers.store_feed import StoreFeed
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from projections.framework import ensure_schema
from projections.profiles import ProfilesProjector
from projections.segment_queries import changes, members
from projections.segments import SegmentsProjector

CTX = Context(actor="segments-contract")
TABLES = SegmentsProjector.tables
SPENDERS = {"field": "purchases.total.EUR", "op": "gte", "value": "500"}
VIP = {"field": "tags", "op": "contains", "value": "VIP"}
EVERYONE = {"field": "purchases.count", "op": "gte", "value": 0}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class SegmentsContract:
    """Fixtures and helpers only (no tests); event store and read store share the database."""

    @pytest.fixture
    def read_store(self, database_url: str) -> Iterator[ReadStore]:
        read_store = open_read_store(database_url)
        ensure_schema(read_store, [ProfilesProjector(), SegmentsProjector()])
        yield read_store
        read_store.close()

    @pytest.fixture
    def segments(self, store: EventStore) -> SegmentService:
        return SegmentService(store)

    @pytest.fixture
    def runner(self, store: EventStore, read_store: ReadStore) -> EmbeddedRunner:
        projectors = [ProfilesProjector(), SegmentsProjector()]
        return EmbeddedRunner(StoreFeed(store), read_store, projectors, batch_size=7)

    # ----------------------------------------------------------------------- helpers

    def run(self, service: CommandService, command: m.Command) -> Outcome:
        return service.execute(command, CTX)

    def register(self, service: CommandService, name: str = "Ada") -> UUID:
        since = datetime.now(UTC) - timedelta(days=365)  # purchases may be back-dated
        customer = self.run(service, m.RegisterCustomer(name=name, occurred_at=since)).customer_id
        assert customer is not None
        return customer

    def buy(self, service: CommandService, customer: UUID, order: str, amount: str) -> Outcome:
        purchase = m.RecordPurchase(
            customer_id=customer, order_id=order, amount=amount, currency="EUR"
        )
        return self.run(service, purchase)

    def rebuild_differences(self, store: EventStore, read_store: ReadStore) -> list[str]:
        """How the live segments tables differ from a rebuild from ``store`` (none: equal)."""
        return rebuild(
            StoreFeed(store), read_store, SegmentsProjector(), verify_only=True
        ).differences

    def history(self, read_store: ReadStore, segment: str) -> list[tuple[str, str, int]]:
        with read_store.transaction() as tx:
            rows = changes(tx, segment)
        return [(r["customer_id"], r["change"], r["position"]) for r in rows]

    def member_ids(
        self, read_store: ReadStore, segment: str, as_of: datetime | None = None
    ) -> list[str]:
        seen: list[str] = []
        cursor = None
        with read_store.transaction() as tx:
            while True:
                page, cursor = members(tx, segment, cursor=cursor, limit=3, as_of=as_of)
                seen += [item["customer_id"] for item in page]
                if cursor is None:
                    return seen

    def snapshot(self, read_store: ReadStore) -> dict[str, list[tuple[Any, ...]]]:
        with read_store.transaction() as tx:
            return {t: sorted(tx.fetchall(f"SELECT * FROM {t}"), key=repr) for t in TABLES}
