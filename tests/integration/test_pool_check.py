"""The check a PostgreSQL pool runs before handing out a connection (:class:`infra.readstore.
StaleCheck`): a connection whose session the server ended is replaced, never used: in the read
store's pool and in the event store's, whose one exchange time travel reads
(``head_and_rows``)."""

from __future__ import annotations

import time
from uuid import UUID

import psycopg
import pytest

from commands import messages as m
from commands.service import CommandService, Context
from infra.readstore import PostgresReadStore
from infra.store import EventStore


def _backend_pid(store: PostgresReadStore) -> int:
    with store.transaction() as tx:
        return int(tx.fetchall("SELECT pg_backend_pid()")[0][0])


def _end_sessions(url: str) -> None:
    """What a server restart does to idle connections: the server ends every session of the
    database but the caller's (an error sent, the socket closed); returns once those backends
    are gone (bounded)."""
    others = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"SELECT pg_terminate_backend(pid) FROM ({others}) AS o")
        deadline = time.monotonic() + 10
        while admin.execute(others).fetchone():
            assert time.monotonic() < deadline, "the backends did not end"
            time.sleep(0.05)


def test_a_connection_whose_session_ended_is_replaced(postgres_url: str) -> None:
    store = PostgresReadStore(postgres_url, pool_size=1)
    try:
        pid = _backend_pid(store)
        _end_sessions(postgres_url)
        assert _backend_pid(store) != pid  # answered on a new connection, no error
        assert store.pool.get_stats().get("connections_lost", 0) >= 1
    finally:
        store.close()


@pytest.mark.backends("postgres")
def test_time_travels_read_survives_an_ended_session(store: EventStore, database_url: str) -> None:
    service = CommandService(store, default_region="DE", index_key="k")
    customer = service.execute(m.RegisterCustomer(name="Ada"), Context(actor="t")).customer_id
    assert isinstance(customer, UUID)
    head, rows = store.backend.head_and_rows(customer)
    pool = store.backend.datastore.pool  # type: ignore[attr-defined]
    with pool.connection() as connection:
        pid = connection.info.backend_pid
    _end_sessions(database_url)
    assert store.backend.head_and_rows(customer) == (head, rows)
    with pool.connection() as connection:
        assert connection.info.backend_pid != pid
