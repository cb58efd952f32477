"""Generic SQL access for read models and the audit tables: SQLite (embedded) or PostgreSQL (full).

Both speak one small SQL dialect: ``?`` placeholders, TEXT for JSON and timestamps (UTC ISO
8601, so they sort as text), BIGINT for positions. Table names in SQL are written as
``{name}`` and resolved per transaction, which is how a rebuild writes into shadow tables
with the very same projector code.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from infra.read_tx import Tx


class ReadStore(ABC):
    """A database for read models, with transactions and table-name mapping."""

    dialect: str

    @abstractmethod
    @contextmanager
    def transaction(self, tables: Mapping[str, str] | None = None) -> Iterator[Tx]:
        """A read-write transaction; commits on success, rolls back on error."""

    @contextmanager
    def snapshot(self, tables: Mapping[str, str] | None = None) -> Iterator[Tx]:
        """A transaction that only reads: what the API's reads use. It never waits for a
        writer (a feed applying a batch), and sees the read models as of one moment."""
        with self.transaction(tables) as tx:
            yield tx

    @abstractmethod
    def table_names(self, tx: Tx) -> set[str]:
        """Names of the tables that exist."""

    @abstractmethod
    def columns(self, tx: Tx, table: str) -> list[str]:
        """Column names of ``table``, in order."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


class SQLiteReadStore(ReadStore):
    """SQLite in WAL mode; one connection per thread; writers serialise on the file lock."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()
        self._shared: sqlite3.Connection | None = None
        if path == ":memory:":
            self._shared = self._connect()
            self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=self._shared is None
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    def _connection(self) -> sqlite3.Connection:
        if self._shared is not None:
            return self._shared
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self, tables: Mapping[str, str] | None = None) -> Iterator[Tx]:
        with self._begin("BEGIN IMMEDIATE", tables) as tx:
            yield tx

    @contextmanager
    def snapshot(self, tables: Mapping[str, str] | None = None) -> Iterator[Tx]:
        """A deferred transaction: in WAL mode it reads a consistent snapshot without taking
        the write lock, so a read never queues behind the batches of a catch-up."""
        with self._begin("BEGIN DEFERRED", tables) as tx:
            yield tx

    @contextmanager
    def _begin(self, begin: str, tables: Mapping[str, str] | None) -> Iterator[Tx]:
        connection = self._connection()
        lock = self._lock if self._shared is not None else None
        if lock:
            lock.acquire()
        try:
            cursor = connection.cursor()
            cursor.execute(begin)
            try:
                yield Tx(cursor, self.dialect, tables or {})
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        finally:
            if lock:
                lock.release()

    def table_names(self, tx: Tx) -> set[str]:
        return {r[0] for r in tx.fetchall("SELECT name FROM sqlite_master WHERE type='table'")}

    def columns(self, tx: Tx, table: str) -> list[str]:
        return [row[1] for row in tx.fetchall(f"PRAGMA table_info({table})")]

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()


class StaleCheck:
    """The check every PostgreSQL pool of the process runs on a connection before handing it
    out (psycopg_pool's ``check_connection``, which costs one round trip). When one turns
    out broken, the server went away since it was last used — after a restart every idle
    connection of every pool is — so all watched pools are checked at once
    (``ConnectionPool.check()``: the broken ones are replaced): a caller meets one stale
    connection, not each in turn with psycopg_pool's growing pauses in between (which took
    longer than a request waits for a connection)."""

    def __init__(self) -> None:
        self._pools: weakref.WeakSet[ConnectionPool[Any]] = weakref.WeakSet()

    def watch(self, pool: ConnectionPool[Any]) -> None:
        self._pools.add(pool)

    def __call__(self, connection: psycopg.Connection[Any]) -> None:
        try:
            ConnectionPool.check_connection(connection)
        except Exception:
            for pool in list(self._pools):
                if not pool.closed:
                    pool.check()
            raise


STALE_CHECK = StaleCheck()


class PostgresReadStore(ReadStore):
    """PostgreSQL through a psycopg 3 connection pool of one to ``pool_size`` connections.

    Outages: a connection is checked before it is handed out (one left over from before a
    server restart is replaced, never used: :class:`StaleCheck`); a caller waits at most ``timeout`` seconds for
    one, then gets ``PoolTimeout`` (transient, :mod:`infra.resilience`); a reconnection is
    tried for as long, then started afresh by the next caller, so the pool is back within a
    second or two of the server."""

    dialect = "postgres"

    def __init__(self, url: str, pool_size: int = 5, *, timeout: float = 3.0) -> None:
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=True,
            kwargs={"autocommit": False},
            check=STALE_CHECK,
            timeout=timeout,
            reconnect_timeout=timeout,
        )
        STALE_CHECK.watch(self.pool)

    @contextmanager
    def transaction(self, tables: Mapping[str, str] | None = None) -> Iterator[Tx]:
        with self.pool.connection() as connection, connection.transaction():
            yield Tx(connection.cursor(), self.dialect, tables or {})

    def table_names(self, tx: Tx) -> set[str]:
        rows = tx.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {r[0] for r in rows}

    def columns(self, tx: Tx, table: str) -> list[str]:
        rows = tx.fetchall(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
        return [row[0] for row in rows]

    def close(self) -> None:
        self.pool.close()


def open_read_store(database_url: str, *, pool_size: int = 5, timeout: float = 3.0) -> ReadStore:
    """The read store for a database URL (the same database as the event store by default);
    PostgreSQL: at most ``pool_size`` connections, waited for at most ``timeout`` seconds."""
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        return SQLiteReadStore(unquote(database_url.removeprefix("sqlite:///")))
    if parts.scheme == "memory":
        return SQLiteReadStore(":memory:")
    if parts.scheme in ("postgresql", "postgres"):
        return PostgresReadStore(database_url, pool_size=pool_size, timeout=timeout)
    msg = f"unsupported read store URL scheme {parts.scheme!r}"
    raise ValueError(msg)
