"""Statements over many values, :data:`CHUNK` values each: a batch of any size reads and
writes with a bounded statement (SQLite's limit on parameters, the cost of one long list)
and a bounded number of statements (one per chunk, never one per value)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from infra.read_tx import Tx

CHUNK = 500
"""Values per statement."""

T = TypeVar("T")


def chunks(values: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """``values`` in order, ``size`` at a time (the last chunk may be shorter; none if empty)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def among(tx: Tx, column: str, values: Sequence[Any]) -> Iterator[tuple[str, list[Any]]]:
    """Per chunk of ``values``, the condition that ``column`` equals one of them and its
    parameters (:meth:`infra.read_tx.Tx.any_of`), for the caller's statements on it::

        for condition, params in among(tx, "customer_id", ids):
            rows += tx.fetchall(f"SELECT … FROM {{profiles}} WHERE {condition}", params)
    """
    for chunk in chunks(values):
        yield tx.any_of(column, chunk)
