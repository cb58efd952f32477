"""Composition root: build the store, read store and services from settings (all entry points)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import orjson
import structlog

from commands.segments import SegmentService
from commands.service import CommandService, Context
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild
from consumers.relay import ensure_relay_tables
from consumers.replay import Connect
from consumers.store_feed import StoreFeed
from domain.segment_rules import is_time_relative, uses_rfm
from infra.api_keys import KeyStore
from infra.data_keys import MasterKeys
from infra.settings import DEV_MASTER_KEYS, STORE_NOTICE, Settings, get_settings
from infra.store import EventStore
from projections import segments
from projections.framework import Projector, ensure_schema
from projections.readstore import ReadStore, open_read_store
from projections.registry import all_projectors
from projections.segments import SegmentsProjector

log = structlog.get_logger(__name__)


@dataclass
class Services:
    settings: Settings
    store: EventStore
    read_store: ReadStore
    commands: CommandService
    segments: SegmentService
    projectors: list[Projector]
    keys: KeyStore
    runner: EmbeddedRunner | None = field(default=None)
    outbox: ReadStore | None = field(default=None)

    @property
    def feed(self) -> StoreFeed:
        return StoreFeed(self.store)

    @property
    def embedded(self) -> bool:
        """Embedded mode: projections are fed in-process from the store (no Kafka)."""
        return self.settings.kafka_bootstrap is None

    def close(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        if self.outbox is not None:
            self.outbox.close()
        self.read_store.close()
        self.store.close()


def build(settings: Settings | None = None) -> Services:
    """Wire the event store, the read store and the command service for the configured mode."""
    if settings is None:
        settings = get_settings()
        STORE_NOTICE(settings)
    if settings.is_postgres and settings.master_keys == DEV_MASTER_KEYS:
        log.warning("privacy.dev_master_key", hint="set CLIENTELE_MASTER_KEYS in production")
    store = _event_store(settings, settings.pool_size)
    read_store = open_read_store(settings.read_models_url, pool_size=settings.pool_size)
    projectors = all_projectors()
    commands = CommandService(
        store,
        default_region=settings.default_phone_region,
        index_key=settings.index_key,
        retries=settings.command_retries,
        cache_bytes=settings.aggregate_cache_mb * 2**20,
        business_time_floor=settings.business_time_floor,
    )
    segment_commands = SegmentService(store, retries=settings.command_retries)
    keys = KeyStore(settings.api_keys_file)
    services = Services(settings, store, read_store, commands, segment_commands, projectors, keys)
    if services.embedded:
        services.runner = EmbeddedRunner(services.feed, read_store, projectors)
        commands.on_commit = segment_commands.on_commit = services.runner.wake
    else:  # the relay's checkpoint lives beside the event store
        services.outbox = open_read_store(settings.database_url, pool_size=1)
    return services


def catch_up_read_models(services: Services, on_batch: Callable[[int], None] | None = None) -> int:
    """Bring the embedded read models up to the store's head now, in this process; returns
    how many events were applied (0 in full mode, where ``clientele consume`` feeds them).

    For whatever writes to the store while no ``serve`` runs: call it after an import (the
    importer does) or any offline write, so a later ``serve`` starts caught up. Safe beside a
    running ``serve``: both take turns on the projections' positions, nothing is applied twice.
    ``on_batch`` is told the size of each applied batch (for a progress bar; the total to
    expect is ``services.runner.backlog()``). Progress is logged like ``serve``'s catch-up.
    Read-model tables are created first if missing (:func:`migrate`).
    """
    if services.runner is None:
        return 0
    migrate(services)
    return services.runner.catch_up(on_batch=on_batch)


def _event_store(settings: Settings, pool_size: int) -> EventStore:
    return EventStore(
        settings.database_url,
        snapshot_interval=settings.snapshot_interval,
        pool_size=pool_size,
        master_keys=MasterKeys.parse(settings.master_keys),
    )


@contextmanager
def replay_connections(settings: Settings) -> Iterator[tuple[StoreFeed, ReadStore]]:
    """The store feed and read store of ``settings``: how a rebuild's worker connects."""
    store = _event_store(settings, 1)
    try:
        read_store = open_read_store(settings.read_models_url, pool_size=1)
        try:
            yield StoreFeed(store), read_store
        finally:
            read_store.close()
    finally:
        store.close()


def parallel_rebuild(services: Services) -> tuple[int, Connect]:
    """(workers, connect) for rebuilds: ``CLIENTELE_REBUILD_WORKERS`` processes, by default
    one per core up to 8 (each holds two connections), each connecting to the databases of
    ``services`` (used on PostgreSQL)."""
    workers = services.settings.rebuild_workers or min(os.cpu_count() or 1, 8)
    return workers, partial(replay_connections, services.settings)


def refresh_segments(
    services: Services, at: datetime | None = None, *, every: float | None = None
) -> int | None:
    """Record a refresh of time-relative and RFM segments as of ``at`` (default: now); returns
    its position. The segments read model decides it (with RFM ranks of that moment).

    ``every`` (seconds; the periodic refresh of ``serve``): the instant is rounded down to a
    multiple of it, so the API processes of a deployment record one refresh per period, and
    nothing is recorded (None) while no segment is time-relative or reads RFM.
    """
    moment = at or datetime.now(UTC)
    if every is not None:
        with services.read_store.transaction() as tx:
            rules = [d["rule"] for d in segments.list_definitions(tx)]
        if not any(is_time_relative(rule) or uses_rfm(rule) for rule in rules):
            return None
        moment = datetime.fromtimestamp(moment.timestamp() // every * every, UTC)
    return services.segments.refresh(moment, Context(actor="clientele:segments-refresh"))


def audit_store(services: Services) -> ReadStore:
    """SQL access to the event store's own database (hash links, seals)."""
    return services.outbox or open_read_store(services.settings.database_url, pool_size=1)


def migrate(services: Services) -> list[str]:
    """Create missing tables; rebuild read models whose schema version changed.

    Returns the names of the projections that were rebuilt.
    """
    stale = ensure_schema(services.read_store, services.projectors)
    if SegmentsProjector.name in stale:
        _record_legacy_segments(services)
    if services.outbox is not None:
        ensure_relay_tables(services.outbox)
    for projector in services.projectors:
        if projector.name in stale:
            rebuild(services.feed, services.read_store, projector)
    return stale


LEGACY_SEGMENT_TABLES = ("segment_definitions", "segment_rfm", "segment_applied")


def _record_legacy_segments(services: Services) -> None:
    """Segments schema 1 kept definitions only in the read store: record them as events
    (define is idempotent, so an interrupted migration can run again), then drop the
    tables of that design. The rebuild that follows decides membership from the events."""
    read_store = services.read_store
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
        services.segments.define(segment_id, name, orjson.loads(rule), purpose, context)
    with read_store.transaction() as tx:
        for table in LEGACY_SEGMENT_TABLES:
            tx.raw(f"DROP TABLE IF EXISTS {table}")
