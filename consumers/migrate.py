"""``migrate``: create missing tables and upgrade read models whose schema changed.

Idempotent, run by ``clientele migrate`` and at the start of every process that reads or feeds
the read models. A read model whose ``schema_version`` changed is rebuilt from the event store;
segments of schema 1 (definitions kept only in the read store) are first recorded as events.
"""

from __future__ import annotations

from typing import Protocol

import orjson

from commands.segments import SegmentService
from commands.service import Context
from consumers.rebuild import rebuild
from consumers.relay_tables import ensure_relay_tables
from consumers.store_feed import StoreFeed
from infra.readstore import ReadStore
from projections.framework import Projector, ensure_schema
from projections.segments import SegmentsProjector

LEGACY_SEGMENT_TABLES = ("segment_definitions", "segment_rfm", "segment_applied")


class Wired(Protocol):
    """What :func:`migrate` needs of a process's services (``bootstrap.Services``)."""

    @property
    def read_store(self) -> ReadStore: ...
    @property
    def feed(self) -> StoreFeed: ...
    @property
    def projectors(self) -> list[Projector]: ...
    @property
    def segments(self) -> SegmentService: ...
    @property
    def embedded(self) -> bool: ...
    @property
    def store_db(self) -> ReadStore: ...


def migrate(services: Wired) -> list[str]:
    """Create missing tables (the relay's too, in full mode); rebuild read models whose schema
    version changed. Returns the names of the projections that were rebuilt."""
    stale = ensure_schema(services.read_store, services.projectors)
    if SegmentsProjector.name in stale:
        _record_legacy_segments(services.read_store, services.segments)
    if not services.embedded:
        ensure_relay_tables(services.store_db)
    for projector in services.projectors:
        if projector.name in stale:
            rebuild(services.feed, services.read_store, projector)
    return stale


def _record_legacy_segments(read_store: ReadStore, segments: SegmentService) -> None:
    """Segments schema 1 kept definitions only in the read store: record them as events
    (any id, ``campaign-<uuid>`` included: schema 1 reserved none; idempotent, so an
    interrupted migration can run again), then drop the tables of that design. The rebuild that follows decides membership from the events."""
    with read_store.transaction() as tx:
        if "segment_definitions" not in read_store.table_names(tx) or "position" in (
            read_store.columns(tx, "segment_definitions")
        ):
            return
        rows = tx.fetchall(
            "SELECT segment_id, name, rule, purpose FROM segment_definitions ORDER BY segment_id"
        )
    context = Context(actor="clientele:migrate")
    for segment_id, name, rule, purpose in rows:
        segments.record_legacy(segment_id, name, orjson.loads(rule), purpose, context)
    with read_store.transaction() as tx:
        for table in LEGACY_SEGMENT_TABLES:
            tx.raw(f"DROP TABLE IF EXISTS {table}")
