"""Rows as one array per column, for PostgreSQL statements that take a whole set at once
(``unnest``): :meth:`infra.readstore.Tx.upsert` and :meth:`~infra.readstore.Tx.delete`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg


def column_arrays(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """``rows`` as one list per column; refused as psycopg refuses a NUL in text it sends
    (the server would only name an invalid byte)."""
    arrays = [list(column) for column in zip(*rows, strict=True)]
    if any(isinstance(v, str) and "\x00" in v for column in arrays for v in column):
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return arrays


def array_casts(arrays: Sequence[Sequence[Any]]) -> str:
    """``%b::type[]`` per column array (sent in binary: psycopg's text form of an array costs
    ~30 times more), the type read from its first non-null value."""
    return ", ".join(f"%b::{array_type(column)}" for column in arrays)


def array_type(column: Sequence[Any]) -> str:
    """The PostgreSQL array type for ``column``'s values (text unless they are numbers)."""
    sample = next((value for value in column if value is not None), None)
    if isinstance(sample, bool):
        return "boolean[]"
    if isinstance(sample, int):
        return "bigint[]"
    if isinstance(sample, float):
        return "double precision[]"
    return "text[]"
