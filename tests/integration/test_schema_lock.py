"""Schema changes are one-at-a-time across processes (PostgreSQL).

CI found ``clientele consume`` dying at start-up with ``duplicate key value violates unique
constraint "pg_type_typname_nsp_index"``: five processes started together against an empty
database, and two ran ``CREATE TABLE IF NOT EXISTS projection_state`` at the same moment. Every
read-store transaction now takes the schema lock at its first CREATE, ALTER or DROP, whichever
module wrote the statement.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from consumers.consumer_offsets import ensure_tables
from consumers.relay_tables import ensure_relay_tables
from infra.read_tx import Tx
from infra.readstore import ReadStore, open_read_store
from infra.store import SCHEMA_LOCK_KEY
from projections import duplicate_candidates
from projections.framework import ensure_schema
from projections.registry import all_projectors

pytestmark = pytest.mark.integration


@pytest.fixture
def read_store(postgres_url: str) -> Iterator[ReadStore]:
    store = open_read_store(postgres_url)
    yield store
    store.close()


def lock_is_free(url: str) -> bool:
    """Whether another session could take the schema lock now."""
    with psycopg.connect(url, autocommit=True) as other:
        row = other.execute("SELECT pg_try_advisory_lock(%s)", (SCHEMA_LOCK_KEY,)).fetchone()
        assert row is not None
        if row[0]:
            other.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))
        return bool(row[0])


SCHEMA_CHANGES = [
    ("execute", "CREATE TABLE IF NOT EXISTS {t} (k TEXT PRIMARY KEY)"),
    ("raw", "create table if not exists t2 (k TEXT)"),
    ("execute", "  CREATE INDEX IF NOT EXISTS t_k ON {t} (k)"),
    ("raw", "ALTER TABLE t ADD COLUMN IF NOT EXISTS v TEXT"),
    ("raw", "DROP TABLE IF EXISTS t_gone"),
]


@pytest.mark.parametrize(("method", "statement"), SCHEMA_CHANGES)
def test_a_schema_change_holds_the_schema_lock_until_the_transaction_ends(
    read_store: ReadStore, postgres_url: str, method: str, statement: str
) -> None:
    with read_store.transaction() as setup:
        setup.raw("CREATE TABLE t (k TEXT PRIMARY KEY)")
    assert lock_is_free(postgres_url)
    with read_store.transaction({"t": "t"}) as tx:
        scoped: Tx = tx.with_tables({"t": "t"})  # the lock is the transaction's, not the view's
        getattr(scoped, method)(statement)
        assert not lock_is_free(postgres_url)
        tx.execute("SELECT count(*) FROM {t}")
    assert lock_is_free(postgres_url)


def test_reads_and_writes_leave_the_schema_lock_alone(
    read_store: ReadStore, postgres_url: str
) -> None:
    with read_store.transaction() as setup:
        setup.raw("CREATE TABLE created_here (k TEXT PRIMARY KEY)")  # a column named like DDL
    with read_store.transaction() as tx:
        tx.execute("INSERT INTO created_here (k) VALUES (?)", ("CREATE TABLE x",))
        tx.execute("UPDATE created_here SET k = ? WHERE k = ?", ("DROP", "CREATE TABLE x"))
        tx.fetchall("SELECT k FROM created_here")
        tx.upsert("created_here", ["k"], ["k"], [("ALTER",)])
        assert lock_is_free(postgres_url)


def test_processes_creating_the_schema_together_all_succeed(postgres_url: str) -> None:
    """Eight start-ups at once on an empty database, each as every process begins (migrate's
    tables, the consumers' and the relay's): none fails, the schema is made once."""
    starters = 8
    barrier = threading.Barrier(starters)
    errors: list[BaseException] = []

    def start() -> None:
        store = open_read_store(postgres_url)
        try:
            barrier.wait(timeout=30)
            ensure_schema(store, all_projectors())
            ensure_tables(store)
            ensure_relay_tables(store)
            duplicate_candidates.ensure_schema(store)
        except BaseException as error:  # collected for the assertion below
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    with psycopg.connect(postgres_url) as check:
        row = check.execute("SELECT count(*) FROM projection_state").fetchone()
    assert row == (len(all_projectors()),)
