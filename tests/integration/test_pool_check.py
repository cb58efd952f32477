"""The check a PostgreSQL pool runs before handing out a connection (:class:`infra.readstore.
StaleCheck`): a connection nothing has arrived on since its last use costs no round trip, and
one whose session the server ended is still replaced, never used: in the read store's pool and
in the event store's, whose one exchange time travel reads (``head_and_rows``)."""

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


def _last_statement(url: str, pid: int) -> str:
    with psycopg.connect(url, autocommit=True) as admin:
        row = admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    assert row is not None
    return str(row[0])


def _end_session(url: str, pid: int) -> None:
    """What a server restart does to an idle connection: the server ends its session (an error
    sent, the socket closed); returns once the backend is gone (bounded)."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "the backend did not end"
            time.sleep(0.05)


def test_an_untouched_connection_is_handed_out_without_a_round_trip(postgres_url: str) -> None:
    store = PostgresReadStore(postgres_url, pool_size=1)
    try:
        pid = _backend_pid(store)  # its last statement: the transaction's COMMIT
        assert _last_statement(postgres_url, pid) == "COMMIT"
        with store.pool.connection() as connection:  # checked, not yet used
            assert connection.info.backend_pid == pid
            assert _last_statement(postgres_url, pid) == "COMMIT"  # no check's empty query
    finally:
        store.close()


def test_a_connection_whose_session_ended_is_replaced(postgres_url: str) -> None:
    store = PostgresReadStore(postgres_url, pool_size=1)
    try:
        pid = _backend_pid(store)
        _end_session(postgres_url, pid)
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
    _end_session(database_url, pid)
    assert store.backend.head_and_rows(customer) == (head, rows)
    with pool.connection() as connection:
        assert connection.info.backend_pid != pid
