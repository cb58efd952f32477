"""Schema changes are one-at-a-time across processes (PostgreSQL).

CI found ``clientele consume`` dying at start-up with ``duplicate key value violates unique
constraint "pg_type_typname_nsp_index"``: five processes started together against an empty
database, and two ran ``CREATE TABLE IF NOT EXISTS projection_state`` at the same moment. Every
read-store transaction now takes the schema lock at its first CREATE, whichever module wrote
the statement.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from consumers.consumer_offsets import ensure_tables
from consumers.policy_checkpoints import PolicyCheckpoints
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


CREATES = [
    ("execute", "CREATE TABLE IF NOT EXISTS {t} (k TEXT PRIMARY KEY)"),
    ("raw", "create table if not exists t2 (k TEXT)"),
    ("execute", "  CREATE INDEX IF NOT EXISTS t_k ON {t} (k)"),
]


@pytest.mark.parametrize(("method", "statement"), CREATES)
def test_a_create_holds_the_schema_lock_until_the_transaction_ends(
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


def test_reads_writes_alter_and_drop_leave_the_schema_lock_alone(
    read_store: ReadStore, postgres_url: str
) -> None:
    """ALTER and DROP wait on their table's own lock: a rebuild's swap (which holds the
    projection rows) never queues behind process start-ups."""
    with read_store.transaction() as setup:
        setup.raw("CREATE TABLE created_here (k TEXT PRIMARY KEY)")  # values named like DDL
        setup.raw("CREATE TABLE gone (k TEXT)")
    with read_store.transaction() as tx:
        tx.execute("INSERT INTO created_here (k) VALUES (?)", ("CREATE TABLE x",))
        tx.execute("UPDATE created_here SET k = ? WHERE k = ?", ("DROP", "CREATE TABLE x"))
        tx.fetchall("SELECT k FROM created_here")
        tx.upsert("created_here", ["k"], ["k"], [("ALTER",)])
        tx.raw("ALTER TABLE created_here ADD COLUMN IF NOT EXISTS v TEXT")
        tx.raw("DROP TABLE IF EXISTS gone")
        assert lock_is_free(postgres_url)


def test_a_create_after_a_rolled_back_savepoint_takes_the_lock_again(
    read_store: ReadStore, postgres_url: str
) -> None:
    """The lock taken inside a savepoint goes when it rolls back; the next CREATE of the
    transaction must take it again, not trust a stale flag."""
    with read_store.transaction() as tx:
        with pytest.raises(ValueError, match="undo"), tx.savepoint():
            tx.raw("CREATE TABLE IF NOT EXISTS undone (k TEXT)")
            assert not lock_is_free(postgres_url)
            raise ValueError("undo")
        assert lock_is_free(postgres_url)
        tx.raw("CREATE TABLE IF NOT EXISTS kept (k TEXT)")
        assert not lock_is_free(postgres_url)
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


def test_a_policy_runner_polls_its_checkpoint_without_the_schema_lock(
    read_store: ReadStore, postgres_url: str
) -> None:
    """The lifecycle and loyalty runners read their checkpoint every second: only the first
    read creates the table (and takes the lock); later ones go past a held lock."""
    checkpoints = PolicyCheckpoints(read_store)
    assert checkpoints.position("lifecycle") == 0
    answers: list[int] = []

    def poll() -> None:
        checkpoints.advance("lifecycle", 7)
        answers.append(checkpoints.position("lifecycle"))

    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        polling = threading.Thread(target=poll, daemon=True)
        polling.start()
        polling.join(10)
        blocked = polling.is_alive()
        holder.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))
    polling.join(10)
    assert not blocked, "a poll after the first waited for the schema lock"
    assert answers == [7]
