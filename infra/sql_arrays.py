"""Sets of rows for the read store's set-based statements (:meth:`infra.read_tx.Tx.upsert`,
:meth:`~infra.read_tx.Tx.delete`, :meth:`~infra.read_tx.Tx.any_of`): one row per key, as
if written one after the other, and, for PostgreSQL, rows as one typed array per column
(``unnest``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import psycopg

Rows = Sequence[Sequence[Any]]


def one_per_key(columns: Sequence[str], key: Sequence[str], rows: Rows, *, last: bool) -> Rows:
    """``rows`` with one row per value of the ``key`` columns: the last of each key (``last``,
    as upserts that replace, applied in order) or the first (as inserts that leave a row
    alone), in the order of each key's first row. One statement cannot touch a row twice on
    PostgreSQL ("ON CONFLICT DO UPDATE command cannot affect row a second time")."""
    at = [columns.index(name) for name in key]
    chosen: dict[tuple[Any, ...], Sequence[Any]] = {}
    for row in rows:
        row_key = tuple(row[i] for i in at)
        if last or row_key not in chosen:
            chosen[row_key] = row
    return rows if len(chosen) == len(rows) else list(chosen.values())


def column_arrays(rows: Rows) -> list[list[Any]]:
    """``rows`` as one list per column; refused as psycopg refuses a NUL in text it sends
    (the server would only name an invalid byte)."""
    arrays = [list(column) for column in zip(*rows, strict=True)]
    if any(isinstance(v, str) and "\x00" in v for column in arrays for v in column):
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return arrays


def array_type(column: Sequence[Any]) -> str | None:
    """The PostgreSQL array type for ``column``'s values (text unless they are numbers), or
    None when it holds no value but None (the statement's context then types it)."""
    sample = next((value for value in column if value is not None), None)
    if sample is None:
        return None
    if isinstance(sample, bool):
        return "boolean[]"
    if isinstance(sample, int | float):
        whole = all(isinstance(v, int) for v in column if v is not None)
        return "bigint[]" if whole else "double precision[]"
    return "text[]"


class UndeclaredFractions(ValueError):
    """A column holds fractional (float) numbers and its caller did not say the column is
    fractional (double precision): a BIGINT or INTEGER target would round them silently on
    PostgreSQL (sent as ``double precision[]``) and keep them as REAL on SQLite."""


def typed(column: list[Any], *, fractional: bool = False) -> tuple[str | None, list[Any]]:
    """(array type, values) for one column sent in binary (psycopg's text form of an array
    costs ~30 times more). A column holding a float is sent as ``double precision[]`` (its
    whole numbers as floats: psycopg refuses a list of mixed types) only when the caller
    says the target column is ``fractional``; else :class:`UndeclaredFractions`."""
    kind = array_type(column)
    if kind != "double precision[]":
        return kind, column
    if not fractional:
        raise UndeclaredFractions(
            "a column holds fractional numbers but is not declared fractional (name it in "
            f"fractional=...); values {column[:5]!r}..."
        )
    return kind, [None if v is None else float(v) for v in column]


def refuse_undeclared_fractions(
    columns: Sequence[str], rows: Rows, fractional: Collection[str]
) -> None:
    """:class:`UndeclaredFractions` when a column not named in ``fractional`` holds a float
    (a subclass too, as numpy's): the check :func:`typed` makes for PostgreSQL's arrays, for
    rows sent as they are (SQLite's statements, PostgreSQL's COPY)."""
    for name, column in zip(columns, zip(*rows, strict=True), strict=True):
        if name not in fractional and any(isinstance(v, float) for v in column):
            raise UndeclaredFractions(
                f"column {name} holds fractional numbers but is not declared fractional "
                f"(name it in fractional=...); values {list(column[:5])!r}..."
            )


def unnest_rows(
    columns: Sequence[str], rows: Rows, *, fractional: Collection[str] = ()
) -> tuple[str, str, list[list[Any]]]:
    """``(select list, source, params)`` for ``SELECT {select list} FROM {source}`` giving
    ``rows`` back on PostgreSQL: each column one typed array, unnested as ``d.<column>``; a
    column with no value but None is a NULL literal instead, which the statement types by its
    target column (a bigint, timestamptz or jsonb column takes no ``text[]``). Only the
    ``fractional`` columns may hold floats (:func:`typed`, :class:`UndeclaredFractions`)."""
    select, names, casts, params = [], [], [], []
    for name, column in zip(columns, column_arrays(rows), strict=True):
        kind, values = typed(column, fractional=name in fractional)
        if kind is None:
            select.append("NULL")
            continue
        select.append(f"d.{name}")
        names.append(name)
        casts.append(f"%b::{kind}")
        params.append(values)
    if not names:
        raise ValueError("no column holds a value: nothing to unnest")
    source = f"unnest({', '.join(casts)}) AS d ({', '.join(names)})"
    return ", ".join(select), source, params
