"""Integration fixtures: a real, throwaway PostgreSQL cluster for the whole test session, the
Kafka-protocol broker (tansu) for each module that asks for it, and one ``backend`` parameter that
runs a contract on every store backend.

Servers start on a free loopback port with the same code as ``clientele dev up``; never skipped —
if a server cannot start, the tests fail and say why.

One contract, every backend: a test (or a class of them) that uses ``database_url`` runs once per
backend, ``[sqlite]`` and ``[postgres]`` by default. ``@pytest.mark.backends("memory", "sqlite",
"postgres")`` chooses others (``memory`` is eventsourcing's in-memory recorder, for the store only).
The PostgreSQL server starts only when a ``[postgres]`` test runs. ``store`` and ``service`` on
that database come with it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from commands.service import CommandService
from infra.local_services import KafkaBroker, PostgresCluster, free_port
from infra.store import EventStore
from tests.api_support import Api, running_api
from tests.integration.kafka_support import TEARDOWN_GRACE


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    # Not pytest's tmp_path: its 0700 parents are closed to the postgres user we drop to as root.
    data_dir = Path(tempfile.mkdtemp(prefix="clientele-pg-"))
    cluster = PostgresCluster(data_dir=data_dir, port=free_port(), fast=True)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> str:
    """A fresh, empty database for one test."""
    url: str = postgres.create_database(f"t_{uuid4().hex[:12]}")
    return url


BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backends(*names): the store backends a test runs on (memory, sqlite, postgres); "
        f"default {', '.join(BACKENDS)}",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = marker.args if marker else BACKENDS
    metafunc.parametrize(
        "backend",
        [
            pytest.param(name, marks=[pytest.mark.integration] if name == "postgres" else [])
            for name in names
        ],
        indirect=True,
    )


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The backend this run of the test uses: ``memory``, ``sqlite`` or ``postgres``."""
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on ``backend`` (``CLIENTELE_DATABASE_URL`` form)."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'clientele.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    """The event store on ``database_url`` (suites that need other options override it)."""
    store = EventStore(database_url)
    yield store
    store.close()


@pytest.fixture
def service(store: EventStore) -> CommandService:
    return CommandService(store, default_region="DE", index_key="k")


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    root = Path(tempfile.mkdtemp(prefix="clientele-broker-"))
    server = KafkaBroker(root, free_port())
    server.start()
    yield server
    server.stop(timeout=TEARDOWN_GRACE)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def api(tmp_path: Path, database_url: str) -> Iterator[Api]:
    """The HTTP API in-process on ``database_url``, with a key per role (:mod:`tests.api_support`)."""
    with running_api(tmp_path, database_url) as running:
        yield running
