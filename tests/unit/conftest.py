"""Unit tests run on eventsourcing's in-memory recorder: no servers, real domain and service;
the CLI tests get one SQLite database each (:func:`database`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from commands.service import CommandService, Context
from infra import logging as infra_logging
from infra.settings import get_settings
from infra.store import EventStore


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """This process's logging as it was before the test: root handlers and level, the wire
    loggers' levels, structlog's configuration, and what spawned children are configured with."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    wire = {name: logging.getLogger(name).level for name in infra_logging.WIRE_LOGGERS}
    config, spawned = structlog.get_config(), dict(infra_logging._configured)
    yield
    root.handlers[:], root.level = handlers, level
    for name, wire_level in wire.items():
        logging.getLogger(name).setLevel(wire_level)
    structlog.configure(**config)
    infra_logging._configured.clear()
    infra_logging._configured.update(spawned)


@pytest.fixture
def store() -> Iterator[EventStore]:
    store = EventStore("memory://", snapshot_interval=5)
    yield store
    store.close()


@pytest.fixture(params=["memory", "sqlite"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    """An event store on each embedded backend: memory, then SQLite."""
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url, snapshot_interval=5)
    yield store
    store.close()


@pytest.fixture
def service(store: EventStore) -> CommandService:
    return CommandService(store, default_region="DE", index_key="test-key")


@pytest.fixture
def ctx() -> Context:
    return Context(actor="unit-test", correlation_id="corr-1")


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``CLIENTELE_DATABASE_URL`` of a fresh SQLite file (plain-text logs) for this test."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CLIENTELE_DATABASE_URL", url)
    monkeypatch.setenv("CLIENTELE_LOG_JSON", "false")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
