"""Bulk reads eventsourcing has no query for.

* :func:`load_many`: the latest snapshot and the newer events of up to 500 aggregates per two
  queries, instead of two queries per aggregate (the repository's way). The batch command path
  prefetches every aggregate its commands name with this, so a batch of 500 commands costs a
  handful of reads before its single write transaction.
* :func:`notifications_by_customer`: customer events grouped by customer (in version order),
  for rebuilds: a read model then loads and writes each customer's rows once, not once per
  batch that happens to hold one of their events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder

from infra.store import CUSTOMER_TOPICS, EventStore

CHUNK = 500


def load_many(store: EventStore, aggregate_ids: Sequence[UUID]) -> dict[UUID, Aggregate]:
    """The stored aggregates among ``aggregate_ids`` (absent ones are left out)."""
    recorder = store.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        mark, cast, key = "%s", "::uuid", _dashed
    elif isinstance(recorder, SQLiteApplicationRecorder):
        mark, cast, key = "?", "", _hex
    else:  # memory://: the repository is as fast as anything
        return _one_by_one(store, aggregate_ids)
    events_table = recorder.events_table_name
    snapshots_table = events_table.removesuffix("events") + "snapshots"
    found: dict[UUID, Aggregate] = {}
    unique = list(dict.fromkeys(aggregate_ids))
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start : start + CHUNK]
        marks = ",".join([f"{mark}{cast}"] * len(chunk))
        snapshots = _stored(
            recorder,
            f"SELECT s.originator_id, s.originator_version, s.topic, s.state FROM {snapshots_table} s "
            f"JOIN (SELECT originator_id, MAX(originator_version) AS v FROM {snapshots_table} "
            f"WHERE originator_id IN ({marks}) GROUP BY originator_id) m "
            "ON s.originator_id = m.originator_id AND s.originator_version = m.v",
            [key(i) for i in chunk],
        )
        since = {_uuid(row.originator_id): row.originator_version for row in snapshots}
        pairs = ",".join([f"({mark}{cast}, {mark}{'::bigint' if cast else ''})"] * len(chunk))
        events = _stored(
            recorder,
            f"WITH w(id, v) AS (VALUES {pairs}) "
            f"SELECT e.originator_id, e.originator_version, e.topic, e.state FROM {events_table} e "
            "JOIN w ON e.originator_id = w.id AND e.originator_version > w.v "
            "ORDER BY e.originator_id, e.originator_version",
            [value for i in chunk for value in (key(i), since.get(i, 0))],
        )
        store.data_keys.preload(_uuid(row.originator_id).hex for row in [*snapshots, *events])
        aggregates: dict[UUID, Any] = {}
        for row in [*snapshots, *events]:  # each snapshot, then the newer events in order
            mutable: Any = store.mapper.to_domain_event(row)
            aggregate_id = _uuid(row.originator_id)
            aggregates[aggregate_id] = mutable.mutate(aggregates.get(aggregate_id))
        found.update({i: a for i, a in aggregates.items() if a is not None})
    return found


Resume = tuple[UUID, int]  # (customer id, version) of the last event read
START: Resume = (UUID(int=0), 0)


def notifications_by_customer(
    store: EventStore, after: Resume, limit: int, until: int
) -> list[Notification]:
    """Up to ``limit`` customer events at positions ``<= until``, ordered by (customer id,
    version), starting after ``after`` (:data:`START` first, then the last one returned)."""
    recorder = store.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        query = (
            f"SELECT notification_id, originator_id, originator_version, topic, state "
            f"FROM {recorder.events_table_name} WHERE notification_id <= %s "
            "AND topic = ANY(%s) AND (originator_id, originator_version) > (%s::uuid, %s) "
            "ORDER BY originator_id, originator_version LIMIT %s"
        )
        params: list[Any] = [until, CUSTOMER_TOPICS, str(after[0]), after[1], limit]
    elif isinstance(recorder, SQLiteApplicationRecorder):
        marks = ",".join("?" * len(CUSTOMER_TOPICS))
        query = (
            f"SELECT rowid AS notification_id, originator_id, originator_version, topic, state "
            f"FROM {recorder.events_table_name} WHERE rowid <= ? AND topic IN ({marks}) "
            "AND (originator_id, originator_version) > (?, ?) "
            "ORDER BY originator_id, originator_version LIMIT ?"
        )
        params = [until, *CUSTOMER_TOPICS, after[0].hex, after[1], limit]
    else:
        assert isinstance(recorder, POPOApplicationRecorder)
        wanted = set(CUSTOMER_TOPICS)
        everything = recorder.select_notifications(None, until)
        ordered = sorted(
            (n for n in everything if n.topic in wanted and n.id <= until),
            key=lambda n: (_uuid(n.originator_id), n.originator_version),
        )
        return [n for n in ordered if (_uuid(n.originator_id), n.originator_version) > after][
            :limit
        ]
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(query, params)
        rows = cursor.fetchall()
    return [
        Notification(
            id=int(row["notification_id"]),
            originator_id=_uuid(row["originator_id"]),
            originator_version=int(row["originator_version"]),
            topic=row["topic"],
            state=bytes(row["state"]),
        )
        for row in rows
    ]


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


def _one_by_one(store: EventStore, aggregate_ids: Sequence[UUID]) -> dict[UUID, Aggregate]:
    found: dict[UUID, Aggregate] = {}
    for aggregate_id in dict.fromkeys(aggregate_ids):
        if store.recorder.select_events(aggregate_id, limit=1):
            found[aggregate_id] = store.repository.get(aggregate_id)
    return found
