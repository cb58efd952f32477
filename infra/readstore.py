"""Generic SQL access for read models and the audit tables: SQLite (embedded) or PostgreSQL (full).

Both speak one small SQL dialect: ``?`` placeholders, TEXT for JSON and timestamps (UTC ISO
8601, so they sort as text), BIGINT for positions. Table names in SQL are written as
``{name}`` and resolved per transaction, which is how a rebuild writes into shadow tables
with the very same projector code.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from infra.sql_arrays import one_per_key, typed, unnest_rows

Row = tuple[Any, ...]
LIKE_ESCAPE = "ESCAPE '\\'"
"""Follows every ``LIKE ?`` whose pattern comes from :func:`like_prefix` (both dialects)."""


def like_prefix(text: str) -> str:
    """A LIKE pattern matching values that start with ``text`` literally: its ``%``, ``_`` and
    ``\\`` are escaped (use with :data:`LIKE_ESCAPE`; SQLite has no default escape character)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class Tx:
    """One read-store transaction: SQL with ``{table}`` names and ``?`` placeholders."""

    def __init__(self, cursor: Any, dialect: str, tables: Mapping[str, str]) -> None:
        self._cursor = cursor
        self.dialect = dialect
        self.tables = tables

    def with_tables(self, tables: Mapping[str, str]) -> Tx:
        """The same transaction, resolving table names through ``tables``."""
        return Tx(self._cursor, self.dialect, tables)

    def sql(self, statement: str) -> str:
        return _render(statement, self.dialect, tuple(sorted(self.tables.items())))

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(self.sql(statement), params)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(self.sql(statement), rows)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Append ``rows`` the caller knows to be new (a key already there is an error).

        PostgreSQL gets them by COPY, which costs a fraction of per-row INSERTs in the client.
        """
        if not rows:
            return
        target = f"{{{table}}} ({', '.join(columns)})"
        if self.dialect != "postgres":
            marks = ", ".join("?" * len(columns))
            self._cursor.executemany(self.sql(f"INSERT INTO {target} VALUES ({marks})"), rows)
            return
        with self._cursor.copy(self.sql(f"COPY {target} FROM STDIN")) as copy:
            for row in rows:
                copy.write_row(row)

    def upsert(
        self,
        table: str,
        key: Sequence[str],
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        replace: bool = True,
        fractional: Sequence[str] = (),
    ) -> None:
        """Insert ``rows`` (``columns`` in order, the ``key`` columns among them); a row whose
        key is there already replaces the other columns (``replace=False``: is left alone).
        Rows sharing a key are written as if one after the other: the last replaces the
        earlier ones (``replace=False``: the first stays), on both backends. A column's value
        None is NULL whatever the column's type. Only the ``fractional`` columns (double
        precision) may mix ints and floats (:class:`infra.sql_arrays.MixedNumbers`).

        PostgreSQL gets ONE statement for the whole set (each column as an array, unnested):
        per-row statements cost the client more than the server's work.
        """
        if not rows:
            return
        rows = one_per_key(columns, key, rows, last=replace)
        names = ", ".join(columns)
        kept = [c for c in columns if c not in key]
        action = (
            f"UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in kept)}"
            if replace and kept
            else "NOTHING"
        )
        conflict = f"ON CONFLICT ({', '.join(key)}) DO {action}"
        if self.dialect != "postgres":
            marks = ", ".join("?" * len(columns))
            self.executemany(f"INSERT INTO {{{table}}} ({names}) VALUES ({marks}) {conflict}", rows)
            return
        select, source, params = unnest_rows(columns, rows, fractional=fractional)
        self.execute(
            f"INSERT INTO {{{table}}} ({names}) SELECT {select} FROM {source} {conflict}", params
        )

    def delete(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Delete the rows of ``table`` whose ``columns`` equal one of ``rows`` (one statement
        on PostgreSQL, as :meth:`upsert`); None equals nothing, as in SQL."""
        if not rows or any(all(v is None for v in c) for c in zip(*rows, strict=True)):
            return  # a column of Nones only: no row equals one of them
        if self.dialect != "postgres":
            where = " AND ".join(f"{c} = ?" for c in columns)
            self.executemany(f"DELETE FROM {{{table}}} WHERE {where}", rows)
            return
        _, source, params = unnest_rows(columns, rows, fractional=columns)  # compared: no rounding
        match = " AND ".join(f"t.{c} = d.{c}" for c in columns)
        self.execute(f"DELETE FROM {{{table}}} AS t USING {source} WHERE {match}", params)

    def any_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A condition that ``column`` equals one of ``values``, and its parameters. PostgreSQL
        gets one binary array: a list of hundreds of ``?`` costs the client ~5 times the CPU
        (typed by its values; by the column when it holds no value but None)."""
        if self.dialect == "postgres":
            kind, array = typed(list(values), fractional=True)  # compared, never stored
            return f"{column} = ANY(%b{'' if kind is None else f'::{kind}'})", [array]
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo everything done inside the block if it raises (the error propagates); the
        rest of the transaction stays usable. PostgreSQL needs this after any failed
        statement; on SQLite it also undoes the writes that came before the failure."""
        if self.dialect == "postgres":
            with self._cursor.connection.transaction():
                yield
            return
        name = f"sp{next(_SAVEPOINTS)}"
        self._cursor.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self._cursor.execute(f"RELEASE SAVEPOINT {name}")
            raise
        self._cursor.execute(f"RELEASE SAVEPOINT {name}")

    def fetchone(self, statement: str, params: Sequence[Any] = ()) -> Row | None:
        self.execute(statement, params)
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        self.execute(statement, params)
        return [tuple(row) for row in self._cursor.fetchall()]

    def raw(self, statement: str, params: Sequence[Any] = ()) -> None:
        """Execute without table-name resolution (DDL that names tables itself)."""
        self._cursor.execute(
            statement.replace("?", "%s") if self.dialect == "postgres" else statement, params
        )


def lock_schema(tx: Tx) -> None:
    """Make table creation one-at-a-time across processes until ``tx`` ends: on PostgreSQL,
    concurrent CREATE … IF NOT EXISTS can collide in the catalog (the store's own tables take
    the same lock)."""
    if tx.dialect == "postgres":
        from infra.store import SCHEMA_LOCK_KEY  # noqa: PLC0415 - eventsourcing: only here

        tx.raw("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK_KEY,))


_SAVEPOINTS = itertools.count(1)


class _Names(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return key


@lru_cache(maxsize=4096)
def _render(statement: str, dialect: str, tables: tuple[tuple[str, str], ...]) -> str:
    rendered = statement.format_map(_Names(tables))
    return rendered.replace("?", "%s") if dialect == "postgres" else rendered


def render_sql(statement: str, dialect: str, tables: Mapping[str, str] | None = None) -> str:
    """A read-store statement (``{table}`` names through ``tables``, ``?`` placeholders) in
    ``dialect``'s SQL, as a :class:`Tx` runs it."""
    return _render(statement, dialect, tuple(sorted((tables or {}).items())))


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
