"""The SQLite backend (embedded mode): eventsourcing's recorder, with hash links and shredding.

The events recorder writes the hash links of the events it inserts, and shreds the keys of the
customers they erase, in the same transaction; its feed reads join the links.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from infra.backends.base import HistoryRow, Linked, Positioned, Resume, positioned_rows
from infra.backends.sql import SqlBackend
from infra.data_keys import KEYS_DDL, shred_in_transaction
from infra.tamper_evidence.chain import HASHES_DDL, sqlite_links

_LINKED = (
    "SELECT e.rowid AS notification_id, e.originator_id, e.originator_version, e.topic, "
    "e.state, h.prev_hash, h.hash FROM {events} e LEFT JOIN event_hashes h "
    "ON h.originator_id = e.originator_id AND h.originator_version = e.originator_version "
    "WHERE e.topic IN ({topics}) AND "
)


class ChainedSQLiteRecorder(SqlBackend, SQLiteApplicationRecorder):
    """SQLite recorder that writes hash links with the events, and shreds the keys of the
    customers they erase (one transaction)."""

    dialect, mark, uuid_cast, position = "sqlite", "?", "", "rowid"

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), HASHES_DDL, KEYS_DDL["sqlite"]]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)  # conflicts raise here first
        sqlite_links(c, stored_events)
        shred_in_transaction(c, stored_events, "?", "stored_snapshots")
        return positions

    def id_param(self, value: UUID) -> str:
        return value.hex

    def in_log_order(self, topics: Sequence[str], after: int, limit: int) -> list[Linked]:
        where = "e.rowid > ? ORDER BY e.rowid LIMIT ?"
        return self._linked(_LINKED + where, [*topics, after, limit], len(topics))

    def by_customer(
        self, topics: Sequence[str], after: Resume, limit: int, until: int, before: UUID | None
    ) -> list[Linked]:
        where = "e.rowid <= ? AND (e.originator_id, e.originator_version) > (?, ?)"
        params: list[Any] = [*topics, until, after[0].hex, after[1]]
        if before is not None:
            where, params = where + " AND e.originator_id < ?", [*params, before.hex]
        order = " ORDER BY e.originator_id, e.originator_version LIMIT ?"
        return self._linked(_LINKED + where + order, [*params, limit], len(topics))

    def count_after(self, topics: Sequence[str], after: int) -> int:
        query = "SELECT count(*) AS n FROM {events} e WHERE e.topic IN ({topics}) AND e.rowid > ?"
        return self._count(query, [*topics, after], len(topics))

    def positioned(self, aggregate_id: UUID, version: int | None) -> Positioned:
        with self.datastore.transaction(commit=False) as cursor:
            return positioned_rows(aggregate_id, self._history_rows(cursor, aggregate_id, version))

    def version_at(self, aggregate_id: UUID, position: int) -> int:
        query = (
            f"SELECT max(originator_version) FROM {self.events_table_name} "
            "WHERE originator_id=? AND rowid <= ?"
        )
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, (aggregate_id.hex, position))
            found = cursor.fetchone()
        return int(found[0] or 0) if found else 0

    def head_and_rows(self, aggregate_id: UUID) -> tuple[int, list[HistoryRow]]:
        with self.datastore.transaction(commit=False) as cursor:
            head = self._max_notification_id(cursor) or 0
            return head, self._history_rows(cursor, aggregate_id, None)

    def _history_rows(
        self, cursor: SQLiteCursor, aggregate_id: UUID, version: int | None
    ) -> list[HistoryRow]:
        query = (
            f"SELECT rowid, originator_version, topic, state FROM {self.events_table_name} "
            "WHERE originator_id=?"
            + (" AND originator_version=?" if version is not None else "")
            + " ORDER BY originator_version"
        )
        params = (aggregate_id.hex,) if version is None else (aggregate_id.hex, version)
        cursor.execute(query, params)
        return [(r[0], r[1], r[2], r[3]) for r in cursor.fetchall()]
