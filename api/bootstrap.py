"""Composition root: build the store and services from settings (one place, all entry points)."""

from __future__ import annotations

from dataclasses import dataclass

from commands.service import CommandService
from infra.settings import Settings, get_settings
from infra.store import EventStore


@dataclass
class Services:
    settings: Settings
    store: EventStore
    commands: CommandService

    def close(self) -> None:
        self.store.close()


def build(settings: Settings | None = None) -> Services:
    """Wire the event store and the command service for the configured mode."""
    settings = settings or get_settings()
    store = EventStore(
        settings.database_url,
        snapshot_interval=settings.snapshot_interval,
        pool_size=settings.pool_size,
    )
    commands = CommandService(
        store,
        default_region=settings.default_phone_region,
        index_key=settings.index_key,
        retries=settings.command_retries,
    )
    return Services(settings, store, commands)
