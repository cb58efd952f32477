"""Integration fixtures: a real, throwaway PostgreSQL cluster for the whole test session, and
the Kafka-protocol broker (tansu) for each module that asks for it.

Started on a free loopback port with the same code as ``clientele dev up``; never skipped —
if the server cannot start, the tests fail and say why.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from infra.local_services import KafkaBroker, PostgresCluster, free_port


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


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    root = Path(tempfile.mkdtemp(prefix="clientele-broker-"))
    server = KafkaBroker(root, free_port())
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
