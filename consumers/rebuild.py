"""Rebuild and verify a projection from the event store, while the live copy keeps serving.

The projector replays the store into shadow tables (same code, other table names). At the end,
one transaction catches the shadow up to the store's head and then either swaps it in (rename)
and moves the live position to where the shadow ended — ``rebuild`` — or compares it with the
live tables, every column of every row (but the parking bookkeeping of
:meth:`Projector.unverified`), and drops it — ``verify``.

Projectors marked ``log_order`` (segments, value, recommendations, duplicates) are replayed
customer by customer with the others up to the first event that crosses customers for them
(for duplicates: any), and from there in log order, exactly as they are fed live; the others customer by customer up to the head
(:mod:`consumers.rebuild_by_customer`), then in log order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from consumers.rebuild_by_customer import (
    Connect,
    CustomerPass,
    Progress,
    log_order_cut,
    rebuild_by_customer,
)
from consumers.store_feed import StoreFeed
from infra.read_tx import Tx
from infra.readstore import ReadStore
from projections.framework import Binding, Projector, lock_positions, now_iso, project

MAX_DEFAULT_WORKERS = 8


def worker_count(configured: int | None) -> int:
    """Worker processes of a rebuild on PostgreSQL: ``configured``
    (``CLIENTELE_REBUILD_WORKERS``), by default one per core up to 8 (each holds two
    connections)."""
    return configured or min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS)


@dataclass
class RebuildResult:
    name: str
    position: int
    events: int
    seconds: float
    differences: list[str] = field(default_factory=list)


def _shadow(projector: Projector) -> tuple[str, dict[str, str]]:
    suffix = f"__rb{time.time_ns()}"
    return projector.name + suffix, {t: t + suffix for t in projector.all_tables()}


def _drop(tx: Tx, tables: dict[str, str]) -> None:
    for table in tables.values():
        tx.raw(f"DROP TABLE IF EXISTS {table}")


def _rows(tx: Tx, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    rows = tx.fetchall(f"SELECT {', '.join(columns)} FROM {table}")
    return sorted(rows, key=repr)


def _compare(
    read_store: ReadStore,
    tx: Tx,
    projector: Projector,
    live: dict[str, str],
    shadow: dict[str, str],
) -> list[str]:
    differences = []
    for logical, shadow_table in shadow.items():
        skip = projector.unverified().get(logical, ())
        columns = [c for c in read_store.columns(tx, live[logical]) if c not in skip]
        have, want = _rows(tx, live[logical], columns), _rows(tx, shadow_table, columns)
        if have != want:
            missing = len(set(want) - set(have))
            extra = len(set(have) - set(want))
            differences.append(
                f"{logical}: {missing} rows missing or different, {extra} unexpected"
            )
    return differences


def rebuild(
    feed: StoreFeed,
    read_store: ReadStore,
    projector: Projector,
    *,
    verify_only: bool = False,
    batch_size: int = 2000,
    progress: Progress = lambda _reached, _head: None,
    workers: int = 1,
    connect: Connect | None = None,
) -> RebuildResult:
    """CustomerPass the store into a shadow copy, then swap it in (or just compare, with ``verify_only``)."""
    return rebuild_all(
        feed,
        read_store,
        [projector],
        verify_only=verify_only,
        batch_size=batch_size,
        progress=progress,
        workers=workers,
        connect=connect,
    )[0]


def rebuild_all(
    feed: StoreFeed,
    read_store: ReadStore,
    projectors: Sequence[Projector],
    *,
    verify_only: bool = False,
    batch_size: int = 2000,
    progress: Progress = lambda _reached, _head: None,
    workers: int = 1,
    connect: Connect | None = None,
) -> list[RebuildResult]:
    """:func:`rebuild` of several projections in one pass: the store is read once, each batch
    is applied to every shadow copy in one transaction, and all are swapped in together.

    ``workers`` processes (each opening its connections with ``connect``) share the replay
    up to the store's head on PostgreSQL; see :mod:`consumers.rebuild_by_customer`."""
    started = time.perf_counter()
    shadows = {p.name: _shadow(p) for p in projectors}
    bindings = [Binding(p, shadows[p.name][1]) for p in projectors]
    state_names = {p.name: shadows[p.name][0] for p in projectors}
    with read_store.transaction() as tx:
        for projector in projectors:
            shadow_name, shadow = shadows[projector.name]
            projector.create(tx.with_tables(shadow))
            tx.execute(
                "INSERT INTO projection_state (name, position, schema_version, tables, updated_at) "
                "VALUES (?, 0, ?, ?, ?)",
                (shadow_name, projector.schema_version, ",".join(projector.tables), now_iso()),
            )
    head = feed.head()
    cuts = {p.name: log_order_cut(feed, p, head) for p in projectors}
    try:
        # Up to the head customer by customer (those in log order: up to the cut); the rest
        # (and live writes meanwhile) in log order: a shadow skips what it has (by its position).
        events, reached, counted = 0, 0, 0
        if any(cuts.values()):
            work = CustomerPass(bindings, state_names, head, batch_size, cuts)
            events = rebuild_by_customer(
                feed, read_store, work, progress, workers=workers, connect=connect
            )
            counted, reached = head, min(cuts.values())
        while True:
            envelopes = feed.read(reached, batch_size)
            if len(envelopes) < batch_size:
                break  # the rest is applied in the final transaction
            with read_store.transaction() as tx:
                project(tx, bindings, envelopes, state_names=state_names)
            reached = envelopes[-1].position
            events += sum(e.position > counted for e in envelopes)
            progress(reached, feed.head())
        with read_store.transaction() as tx:
            lock_positions(tx, [*state_names, *state_names.values()])
            while envelopes:
                project(tx, bindings, envelopes, state_names=state_names)
                reached = envelopes[-1].position
                events += sum(e.position > counted for e in envelopes)
                envelopes = feed.read(reached, batch_size)
            progress(reached, reached)
            results = [
                _finish(
                    read_store,
                    tx,
                    projector,
                    shadows[projector.name],
                    reached=reached,
                    verify_only=verify_only,
                )
                for projector in projectors
            ]
    except BaseException:
        with read_store.transaction() as tx:
            for shadow_name, shadow in shadows.values():
                _drop(tx, shadow)
                tx.execute("DELETE FROM projection_state WHERE name = ?", (shadow_name,))
        raise
    seconds = time.perf_counter() - started
    for result in results:
        result.events, result.seconds = events, seconds
    return results


def _finish(
    read_store: ReadStore,
    tx: Tx,
    projector: Projector,
    shadow_of: tuple[str, dict[str, str]],
    *,
    reached: int,
    verify_only: bool,
) -> RebuildResult:
    """Compare-and-drop or swap one caught-up shadow copy (inside the final transaction)."""
    shadow_name, shadow = shadow_of
    live = {t: t for t in projector.all_tables()}
    result = RebuildResult(projector.name, reached, 0, 0.0)
    if verify_only:
        result.differences = _compare(read_store, tx, projector, live, shadow)
        _drop(tx, shadow)
    else:
        _swap(tx, live, shadow, read_store.table_names(tx))
        tx.execute(
            "UPDATE projection_state SET position = ?, schema_version = ?, updated_at = ? "
            "WHERE name = ?",
            (reached, projector.schema_version, now_iso(), projector.name),
        )
    tx.execute("DELETE FROM projection_state WHERE name = ?", (shadow_name,))
    return result


def _swap(tx: Tx, live: dict[str, str], shadow: dict[str, str], existing: set[str]) -> None:
    """Replace live tables by their shadows, atomically (inside the caller's transaction).

    A table new in this schema version has no live copy yet (``existing`` names those that do).
    """
    for logical, shadow_table in shadow.items():
        retired = f"{shadow_table}_old"
        if live[logical] in existing:
            tx.raw(f"ALTER TABLE {live[logical]} RENAME TO {retired}")
        tx.raw(f"ALTER TABLE {shadow_table} RENAME TO {live[logical]}")
        if live[logical] in existing:
            tx.raw(f"DROP TABLE {retired}")
