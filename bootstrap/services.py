"""The services of one process: event store, read store, command services and the embedded
runner, wired from settings. Every entry point (HTTP, CLI, benchmarks, tests) gets them here,
as a context manager that closes what it opened::

    with build() as services:
        services.commands.execute(...)

Operations on them live in the room of their concern: ``consumers.migrate`` (tables and
schema upgrades), ``consumers.rebuild`` (rebuilds and their workers),
``consumers.segment_refresh``, ``consumers.status`` (projection status). Long-running
processes are built in :mod:`bootstrap.processes`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType

from commands.campaigns import CampaignService, FrequencyCap
from commands.models import ModelService
from commands.policies import PolicyService
from commands.segments import SegmentService
from commands.service import CommandService
from consumers.campaign_launch import CampaignLauncher
from consumers.embedded import EmbeddedRunner, catch_up_read_models
from consumers.rebuild_by_customer import Connect
from consumers.store_feed import StoreFeed
from infra import resilience
from infra.api_keys import KeyStore
from infra.data_keys import MasterKeys
from infra.readstore import ReadStore, open_read_store
from infra.settings import STORE_NOTICE, Settings, get_settings
from infra.store import EventStore
from projections.framework import Projector
from projections.registry import all_projectors


@dataclass
class Services:
    """What a process works with. ``runner`` (embedded mode only) feeds the read models from
    the store in-process; it is woken after every local write."""

    settings: Settings
    store: EventStore
    read_store: ReadStore
    commands: CommandService
    segments: SegmentService
    projectors: list[Projector]
    keys: KeyStore
    policies: PolicyService
    runner: EmbeddedRunner | None = None
    _store_db: ReadStore | None = field(default=None, repr=False)
    _models: ModelService | None = field(default=None, repr=False)

    @property
    def feed(self) -> StoreFeed:
        return StoreFeed(self.store)

    @property
    def models(self) -> ModelService:
        """The churn model's fitted versions (read from and recorded in the store); one
        service per process, which keeps the model it last read (:meth:`ModelService.as_seen`)."""
        if self._models is None:
            self._models = ModelService(self.store, retries=self.settings.command_retries)
        return self._models

    @property
    def campaigns(self) -> CampaignService:
        """Campaigns (read from and recorded in the store)."""
        return CampaignService(self.store, retries=self.settings.command_retries)

    @property
    def launcher(self) -> CampaignLauncher:
        """Launches campaigns; in embedded mode it brings the read models up to date itself."""
        cap = FrequencyCap(
            self.settings.campaign_max_touches, self.settings.campaign_cap_window_days
        )
        return CampaignLauncher(
            self.campaigns,
            self.commands,
            self.segments,
            self.read_store,
            cap,
            catch_up=None if self.runner is None else partial(catch_up_read_models, self),
        )

    @property
    def embedded(self) -> bool:
        """Embedded mode: projections are fed in-process from the store (no Kafka)."""
        return self.settings.kafka_bootstrap is None

    @property
    def store_db(self) -> ReadStore:
        """SQL access to the event store's own database (one connection, opened on first
        use): the relay's checkpoints and parked customers, hash links and seals."""
        if self._store_db is None:
            self._store_db = open_read_store(
                self.settings.database_url,
                pool_size=1,
                timeout=self.settings.database_timeout_seconds,
            )
        return self._store_db

    @property
    def connect_worker(self) -> Connect:
        """How a rebuild's worker process opens its own connections (picklable)."""
        return partial(worker_connections, self.settings)

    def close(self) -> None:
        """Stop the runner and close every connection (idempotent)."""
        if self.runner is not None:
            self.runner.stop()
        if self._store_db is not None:
            self._store_db.close()
            self._store_db = None
        self.read_store.close()
        self.store.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def build(settings: Settings | None = None) -> Services:
    """Wire the event store, the read store and the command services for the configured mode
    (``settings`` default to the environment's, and the store used is said on stderr)."""
    if settings is None:
        settings = get_settings()
        STORE_NOTICE(settings)
    resilience.configure(settings.backoff)
    store = _event_store(settings, settings.pool_size)
    resilience.mark(resilience.DATABASE, up=True)  # it answered: the tables are there
    read_store = _read_store(settings, settings.pool_size)
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
    policies = PolicyService(store, retries=settings.command_retries)
    services = Services(
        settings, store, read_store, commands, segment_commands, all_projectors(), keys, policies
    )
    if services.embedded:
        services.runner = EmbeddedRunner(services.feed, read_store, services.projectors)
        commands.on_commit = segment_commands.on_commit = services.runner.wake
    return services


def _event_store(settings: Settings, pool_size: int) -> EventStore:
    return EventStore(
        settings.database_url,
        snapshot_interval=settings.snapshot_interval,
        pool_size=pool_size,
        pool_timeout=settings.database_timeout_seconds,
        master_keys=MasterKeys.parse(settings.master_keys),
    )


def _read_store(settings: Settings, pool_size: int) -> ReadStore:
    return open_read_store(
        settings.read_models_url, pool_size=pool_size, timeout=settings.database_timeout_seconds
    )


@contextmanager
def worker_connections(settings: Settings) -> Iterator[tuple[StoreFeed, ReadStore]]:
    """The store feed and read store of ``settings``: how a rebuild's worker connects."""
    store = _event_store(settings, 1)
    try:
        read_store = _read_store(settings, 1)
        try:
            yield StoreFeed(store), read_store
        finally:
            read_store.close()
    finally:
        store.close()
