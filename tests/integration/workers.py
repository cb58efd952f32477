"""Helpers for tests that rebuild in worker processes."""

from __future__ import annotations

from functools import partial

from bootstrap.services import worker_connections
from consumers.rebuild_by_customer import Connect
from infra.settings import Settings


def worker_connect(database_url: str) -> Connect:
    """How a rebuild's worker processes reach a test's database (store and read models)."""
    return partial(
        worker_connections, Settings(database_url=database_url, read_database_url=database_url)
    )
