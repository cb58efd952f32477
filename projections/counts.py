"""Count tables kept by projectors: sums over customers of what each one contributes.

A batch adds, per key, the difference between its customers' contributions after and before
it. Sums do not depend on the order in which customers are applied, so live and rebuilt
tables agree — provided a row at zero is deleted whichever way it got there (a rebuild that
never touched the key has no row). Rows are written in key order, so feeds writing side by
side (a rebuild's workers) wait for each other but never deadlock. A batch adds to a table in
ONE statement on PostgreSQL (:meth:`infra.read_tx.Tx.upsert`), and deletes the rows that may
have reached zero in one more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from infra.read_tx import Tx


def add_counts(
    tx: Tx,
    table: str,
    keys: Sequence[str],
    value: str,
    deltas: Mapping[Any, int],
    *,
    signed: bool = False,
) -> None:
    """Add ``deltas`` (key tuple -> change) to ``table``; rows reaching zero go. Counts never
    fall below zero, so only a decrease makes them zero; ``signed`` values can also rise to
    it (-1, then +1 from another customer)."""
    rows = sorted((*key, delta) for key, delta in deltas.items() if delta)
    tx.upsert(table, keys, (*keys, value), rows, added=(value,))
    zeros = [(*row[:-1], 0) for row in rows if signed or row[-1] < 0]
    tx.delete(table, (*keys, value), zeros)
