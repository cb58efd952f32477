"""Unit tests run on eventsourcing's in-memory recorder: no servers, real domain and service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from commands.service import CommandService, Context
from infra.store import EventStore


@pytest.fixture
def store() -> Iterator[EventStore]:
    store = EventStore("memory://", snapshot_interval=5)
    yield store
    store.close()


@pytest.fixture
def service(store: EventStore) -> CommandService:
    return CommandService(store, default_region="DE", index_key="test-key")


@pytest.fixture
def ctx() -> Context:
    return Context(actor="unit-test", correlation_id="corr-1")
