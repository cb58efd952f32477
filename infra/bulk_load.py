"""Loading many aggregates at once: the latest snapshot and the newer events of up to 500
aggregates per two queries, instead of two queries per aggregate (the repository's way).

The batch command path prefetches every aggregate its commands name with this, so a batch of
500 commands costs a handful of reads before its single write transaction. Aggregates the
caller already holds (``known``, at some version) are brought up to date instead: only their
newer events are read and applied, so what a load reads does not grow with their history.
Every customer loaded leaves its footprint (:mod:`infra.snapshots`) with the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder

from domain.customer import Customer
from infra.store import EventStore

CHUNK = 500
Rows = tuple[dict[UUID, StoredEvent], dict[UUID, list[StoredEvent]]]


def load_many(
    store: EventStore,
    aggregate_ids: Sequence[UUID],
    known: Mapping[UUID, Aggregate] | None = None,
) -> dict[UUID, Aggregate]:
    """The stored aggregates among ``aggregate_ids`` (absent ones are left out).

    ``known`` aggregates are taken over (mutated in place) and fast-forwarded by their events
    newer than their version; the others are folded from their newest snapshot.
    """
    known = known or {}
    read = _read_sql if isinstance(store.recorder, _SQL_RECORDERS) else _read_each
    found: dict[UUID, Aggregate] = {}
    unique = list(dict.fromkeys(aggregate_ids))
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start : start + CHUNK]
        versions = {i: known[i].version for i in chunk if i in known}
        snapshots, events = read(store, chunk, versions)
        store.data_keys.preload(i.hex for i in [*snapshots, *events])
        for aggregate_id in chunk:
            snapshot, newer = snapshots.get(aggregate_id), events.get(aggregate_id, [])
            aggregate: Any = known.get(aggregate_id)
            for row in [snapshot, *newer] if snapshot is not None else newer:
                aggregate = store.mapper.to_domain_event(row).mutate(aggregate)  # type: ignore[attr-defined]
            if aggregate is None:
                continue
            found[aggregate_id] = aggregate
            if isinstance(aggregate, Customer):
                if aggregate_id in versions:
                    store.footprints.extend(aggregate_id, newer)
                else:
                    store.footprints.loaded(aggregate_id, snapshot, newer)
    return found


_SQL_RECORDERS = (PostgresApplicationRecorder, SQLiteApplicationRecorder)


def _read_sql(store: EventStore, chunk: list[UUID], versions: dict[UUID, int]) -> Rows:
    """Newest snapshots of the aggregates not in ``versions``, then every aggregate's events
    after its snapshot (or after its version in ``versions``): two queries."""
    recorder: Any = store.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        mark, cast, key = "%s", "::uuid", _dashed
    else:
        mark, cast, key = "?", "", _hex
    events_table = recorder.events_table_name
    snapshots_table = events_table.removesuffix("events") + "snapshots"
    cold = [i for i in chunk if i not in versions]
    snapshots: dict[UUID, StoredEvent] = {}
    if cold:
        marks = ",".join([f"{mark}{cast}"] * len(cold))
        rows = _stored(
            recorder,
            f"SELECT s.originator_id, s.originator_version, s.topic, s.state FROM {snapshots_table} s "
            f"JOIN (SELECT originator_id, MAX(originator_version) AS v FROM {snapshots_table} "
            f"WHERE originator_id IN ({marks}) GROUP BY originator_id) m "
            "ON s.originator_id = m.originator_id AND s.originator_version = m.v",
            [key(i) for i in cold],
        )
        snapshots = {_uuid(row.originator_id): row for row in rows}
    since = {i: s.originator_version for i, s in snapshots.items()} | versions
    pairs = ",".join([f"({mark}{cast}, {mark}{'::bigint' if cast else ''})"] * len(chunk))
    events: dict[UUID, list[StoredEvent]] = {}
    for row in _stored(
        recorder,
        f"WITH w(id, v) AS (VALUES {pairs}) "
        f"SELECT e.originator_id, e.originator_version, e.topic, e.state FROM {events_table} e "
        "JOIN w ON e.originator_id = w.id AND e.originator_version > w.v "
        "ORDER BY e.originator_id, e.originator_version",
        [value for i in chunk for value in (key(i), since.get(i, 0))],
    ):
        events.setdefault(_uuid(row.originator_id), []).append(row)
    return snapshots, events


def _read_each(store: EventStore, chunk: list[UUID], versions: dict[UUID, int]) -> Rows:
    """The same rows through the recorders' own queries, aggregate by aggregate (memory://)."""
    snapshots: dict[UUID, StoredEvent] = {}
    events: dict[UUID, list[StoredEvent]] = {}
    for aggregate_id in chunk:
        snapshot = None if aggregate_id in versions else store.newest_snapshot(aggregate_id)
        if snapshot is not None:
            snapshots[aggregate_id] = snapshot
        after = versions.get(aggregate_id, snapshot.originator_version if snapshot else 0)
        newer = store.stored_events(aggregate_id, after)
        if newer:
            events[aggregate_id] = newer
    return snapshots, events


def _stored(recorder: Any, query: str, params: list[Any]) -> list[StoredEvent]:
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(query, params)
        rows = cursor.fetchall()
    return [
        StoredEvent(
            originator_id=_uuid(row["originator_id"]),
            originator_version=int(row["originator_version"]),
            topic=row["topic"],
            state=bytes(row["state"]),
        )
        for row in rows
    ]


def _dashed(value: UUID) -> str:
    return str(value)


def _hex(value: UUID) -> str:
    return value.hex


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
