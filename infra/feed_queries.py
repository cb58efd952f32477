"""Customer events with their hash-chain links, read in one query per batch.

eventsourcing reads the notification log without our ``event_hashes`` table; the feeds (relay,
projections, rebuilds, audit export) need both, so these queries join them:

* :func:`in_log_order`: after a position, in global order (the relay and live feeds; the
  read models' feed adds the segment events, see ``FEED_TOPICS``);
* :func:`by_customer`: up to a position, grouped by customer in version order (rebuilds: a
  read model then loads and writes each customer's rows about once);
* :func:`count_after`: how many events of some topics follow a position (lag, exactly).

Index aggregates (email, idempotency) are always left out. ``memory://`` keeps no chain: links are
None there.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder

from infra.store import CUSTOMER_TOPICS, EventStore

Chain = tuple[str, str]  # (prev_hash, hash)
Linked = tuple[Notification, Chain | None]
Resume = tuple[UUID, int]  # (customer id, version) of the last event read
START: Resume = (UUID(int=0), 0)

_PG = (
    "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state, "
    "h.prev_hash, h.hash FROM {events} e LEFT JOIN event_hashes h "
    "ON h.originator_id = replace(e.originator_id::text, '-', '') "
    "AND h.originator_version = e.originator_version WHERE e.topic = ANY(%s) AND "
)
_SQLITE = (
    "SELECT e.rowid AS notification_id, e.originator_id, e.originator_version, e.topic, "
    "e.state, h.prev_hash, h.hash FROM {events} e LEFT JOIN event_hashes h "
    "ON h.originator_id = e.originator_id AND h.originator_version = e.originator_version "
    "WHERE e.topic IN ({topics}) AND "
)


def in_log_order(
    store: EventStore, after: int, limit: int, topics: list[str] = CUSTOMER_TOPICS
) -> list[Linked]:
    """Up to ``limit`` events of ``topics`` (customer events unless told) at positions after
    ``after``, in log order."""
    recorder = store.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        where = "e.notification_id > %s ORDER BY e.notification_id LIMIT %s"
        return _linked(recorder, _PG + where, [topics, after, limit])
    if isinstance(recorder, SQLiteApplicationRecorder):
        where = "e.rowid > ? ORDER BY e.rowid LIMIT ?"
        return _linked(recorder, _SQLITE + where, [*topics, after, limit], len(topics))
    assert isinstance(recorder, POPOApplicationRecorder)
    return [(n, None) for n in store.notifications_of(topics, after, limit)]


def by_customer(
    store: EventStore, after: Resume, limit: int, until: int, before: UUID | None = None
) -> list[Linked]:
    """Up to ``limit`` customer events at positions ``<= until``, ordered by (customer id,
    version), starting after ``after`` (:data:`START` first, then the last one returned) and,
    with ``before``, only of customers whose id sorts below it (a range of customers)."""
    recorder = store.recorder
    order = " ORDER BY e.originator_id, e.originator_version LIMIT "
    if isinstance(recorder, PostgresApplicationRecorder):
        where = (
            "e.notification_id <= %s AND (e.originator_id, e.originator_version) > (%s::uuid, %s)"
        )
        params: list[Any] = [CUSTOMER_TOPICS, until, str(after[0]), after[1]]
        if before is not None:
            where, params = where + " AND e.originator_id < %s::uuid", [*params, str(before)]
        return _linked(recorder, _PG + where + order + "%s", [*params, limit])
    if isinstance(recorder, SQLiteApplicationRecorder):
        where = "e.rowid <= ? AND (e.originator_id, e.originator_version) > (?, ?)"
        params = [*CUSTOMER_TOPICS, until, after[0].hex, after[1]]
        if before is not None:
            where, params = where + " AND e.originator_id < ?", [*params, before.hex]
        return _linked(recorder, _SQLITE + where + order + "?", [*params, limit])
    assert isinstance(recorder, POPOApplicationRecorder)
    everything = store.customer_notifications(0, until)
    ordered = sorted(
        (n for n in everything if n.id <= until),
        key=lambda n: (_uuid(n.originator_id), n.originator_version),
    )
    later = [
        n
        for n in ordered
        if (_uuid(n.originator_id), n.originator_version) > after
        and (before is None or _uuid(n.originator_id) < before)
    ]
    return [(n, None) for n in later[:limit]]


def count_after(store: EventStore, after: int, topics: list[str] = CUSTOMER_TOPICS) -> int:
    """Exactly how many events of ``topics`` are at positions after ``after`` (no cap: a lag
    of 94,280 is 94,280). Counts over the position index, so it costs the backlog, not the log."""
    recorder = store.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        query = "SELECT count(*) AS n FROM {events} e WHERE e.topic = ANY(%s) AND e.notification_id > %s"
        params: list[Any] = [topics, after]
    elif isinstance(recorder, SQLiteApplicationRecorder):
        query = "SELECT count(*) AS n FROM {events} e WHERE e.topic IN ({topics}) AND e.rowid > ?"
        params = [*topics, after]
    else:
        assert isinstance(recorder, POPOApplicationRecorder)
        return len(store.notifications_of(topics, after, recorder.max_notification_id() or 0))
    statement = query.format(events=recorder.events_table_name, topics=",".join("?" * len(topics)))
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    return int(row["n"]) if row else 0


def _linked(
    recorder: Any, query: str, params: list[Any], topics: int = len(CUSTOMER_TOPICS)
) -> list[Linked]:
    statement = query.format(events=recorder.events_table_name, topics=",".join("?" * topics))
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall()
    return [
        (
            Notification(
                id=int(row["notification_id"]),
                originator_id=_uuid(row["originator_id"]),
                originator_version=int(row["originator_version"]),
                topic=row["topic"],
                state=bytes(row["state"]),
            ),
            None if row["hash"] is None else (row["prev_hash"], row["hash"]),
        )
        for row in rows
    ]


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
