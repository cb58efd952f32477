"""One read-store transaction (:class:`Tx`): SQL with ``{table}`` names and ``?`` placeholders,
rendered for SQLite or PostgreSQL, with bulk writes (COPY, unnest) and the schema lock."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from infra.sql_arrays import one_per_key, refuse_undeclared_fractions, typed, unnest_rows

Row = tuple[Any, ...]
LIKE_ESCAPE = "ESCAPE '\\'"
"""Follows every ``LIKE ?`` whose pattern comes from :func:`like_prefix` (both dialects)."""


def like_prefix(text: str) -> str:
    """A LIKE pattern matching values that start with ``text`` literally: its ``%``, ``_`` and
    ``\\`` are escaped (use with :data:`LIKE_ESCAPE`; SQLite has no default escape character)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class _Schema:
    """Whether a transaction holds the schema lock (shared by its :meth:`Tx.with_tables`)."""

    __slots__ = ("locked",)

    def __init__(self) -> None:
        self.locked = False


class Tx:
    """One read-store transaction: SQL with ``{table}`` names and ``?`` placeholders.

    On PostgreSQL its first CREATE takes the schema lock until the transaction ends
    (:meth:`lock_schema`): concurrent ``CREATE … IF NOT EXISTS`` of the same table collide in
    the catalog (``pg_type_typname_nsp_index``) when processes start together. ALTER and DROP
    wait on the table's own lock instead (a rebuild's swap never queues behind start-ups).
    """

    def __init__(
        self,
        cursor: Any,
        dialect: str,
        tables: Mapping[str, str],
        schema: _Schema | None = None,
    ) -> None:
        self._cursor = cursor
        self.dialect = dialect
        self.tables = tables
        self._schema = _Schema() if schema is None else schema

    def with_tables(self, tables: Mapping[str, str]) -> Tx:
        """The same transaction, resolving table names through ``tables``."""
        return Tx(self._cursor, self.dialect, tables, self._schema)

    def sql(self, statement: str) -> str:
        return _render(statement, self.dialect, tuple(sorted(self.tables.items())))

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self._before(statement)
        self._cursor.execute(self.sql(statement), params)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(self.sql(statement), rows)

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        fractional: Sequence[str] = (),
    ) -> None:
        """Append ``rows`` the caller knows to be new (a key already there is an error). Only
        the ``fractional`` columns may hold floats, on both backends
        (:class:`infra.sql_arrays.UndeclaredFractions`; SQLite would keep a REAL in an
        integer column, COPY would write a text column's float as text).

        PostgreSQL gets them by COPY, which costs a fraction of per-row INSERTs in the client.
        """
        if not rows:
            return
        refuse_undeclared_fractions(columns, rows, fractional)
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
        added: Sequence[str] = (),
    ) -> None:
        """Insert ``rows`` (``columns`` in order, the ``key`` columns among them); a row whose
        key is there already replaces the other columns (``replace=False``: is left alone),
        but the values of the ``added`` columns are added to the row's (counts). Rows
        sharing a key are written as if one after the other: the last replaces the earlier
        ones (``replace=False``: the first stays), on both backends; with ``added`` columns
        they are refused (ValueError), as are ``added`` columns that are keys or not among
        ``columns``, and a None in one. A column's value None is NULL whatever the column's
        type. Only the ``fractional`` columns (double precision) may hold floats, on both
        backends (:class:`infra.sql_arrays.UndeclaredFractions`).

        PostgreSQL gets ONE statement for the whole set (each column as an array, unnested,
        written in the order given): per-row statements cost the client more than the
        server's work.
        """
        if not rows:
            return
        kept = [c for c in columns if c not in key]
        if not set(added) <= set(kept):
            raise ValueError(f"added columns of {table} must be written, not key: {added}")
        at = [columns.index(c) for c in added]
        if any(row[i] is None for row in rows for i in at):
            raise ValueError(f"a None in an added column of {table}: NULL adds up to NULL")
        unique = one_per_key(columns, key, rows, last=replace)
        if added and len(unique) != len(rows):
            raise ValueError(f"rows share a key of {table}: their {', '.join(added)} would add up")
        names = ", ".join(columns)
        sets = [
            f"{c} = t.{c} + excluded.{c}" if c in added else f"{c} = excluded.{c}"
            for c in kept
            if replace or c in added
        ]
        action = f"UPDATE SET {', '.join(sets)}" if sets else "NOTHING"
        conflict = f"ON CONFLICT ({', '.join(key)}) DO {action}"
        target = f"{{{table}}} AS t ({names})"
        if self.dialect != "postgres":
            refuse_undeclared_fractions(columns, unique, fractional)
            marks = ", ".join("?" * len(columns))
            self.executemany(f"INSERT INTO {target} VALUES ({marks}) {conflict}", unique)
            return
        select, source, params = unnest_rows(columns, unique, fractional=fractional)
        self.execute(f"INSERT INTO {target} SELECT {select} FROM {source} {conflict}", params)

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

    def values(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A query giving ``values`` as rows of one column (``WITH name (column) AS (…)``), and
        its parameters: one binary array on PostgreSQL (as :meth:`any_of`), ``VALUES`` rows
        on SQLite. Raises ValueError when ``values`` is empty (no query gives no rows typed)."""
        if not values:
            raise ValueError("Tx.values needs at least one value")
        if self.dialect == "postgres":
            kind, array = typed(list(values), fractional=True)
            return f"SELECT unnest(%b{'' if kind is None else f'::{kind}'})", [array]
        return f"VALUES {', '.join(['(?)'] * len(values))}", list(values)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo everything done inside the block if it raises (the error propagates); the
        rest of the transaction stays usable. PostgreSQL needs this after any failed
        statement; on SQLite it also undoes the writes that came before the failure."""
        if self.dialect == "postgres":
            locked = self._schema.locked
            try:
                with self._cursor.connection.transaction():
                    yield
            except BaseException:
                self._schema.locked = locked  # a lock taken inside went with the savepoint
                raise
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
        self._before(statement)
        self._cursor.execute(
            statement.replace("?", "%s") if self.dialect == "postgres" else statement, params
        )

    def lock_schema(self) -> None:
        """Make schema changes one-at-a-time across processes until the transaction ends
        (PostgreSQL; SQLite writers are serialised anyway). The store's own tables take the
        same advisory lock (:data:`infra.store.SCHEMA_LOCK_KEY`)."""
        if self.dialect != "postgres" or self._schema.locked:
            return
        from infra.store import SCHEMA_LOCK_KEY  # noqa: PLC0415 - eventsourcing: only here

        self._cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        self._schema.locked = True

    def _before(self, statement: str) -> None:
        if self.dialect == "postgres" and not self._schema.locked and _creates(statement):
            self.lock_schema()


_CREATE = re.compile(r"\s*CREATE\s", re.IGNORECASE)


def _creates(statement: str) -> bool:
    return _CREATE.match(statement) is not None


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
