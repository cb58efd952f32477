"""What the two SQL backends share: reading linked events and loading many aggregates at once.

The statements differ only in placeholders (``%s`` and casts on PostgreSQL, ``?`` on SQLite),
how ids are written (dashed UUIDs, hex text) and the position column (``notification_id``,
``rowid``); each backend module gives its own feed queries and these few marks.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent

from infra.backends.base import (
    Latest,
    Linked,
    Ref,
    StoreBackend,
    as_uuid,
    stored_rows,
    uuid_ids,
)
from infra.data_keys import DataKeys, MasterKeys, SqlDataKeys
from infra.sql_chunks import chunks


class SqlBackend(StoreBackend):
    """Mixed into eventsourcing's PostgreSQL and SQLite application recorders."""

    dialect: str  # "postgres" | "sqlite"
    mark: str  # placeholder
    uuid_cast: str  # how a placeholder becomes a UUID ("" where ids are text)
    position: str  # the events' position column
    events_table_name: str
    datastore: Any

    @abstractmethod
    def id_param(self, value: UUID) -> str:
        """An aggregate id as this backend stores it."""

    @property
    def snapshots_table(self) -> str:
        return self.events_table_name.removesuffix("events") + "snapshots"

    def data_keys(self, master: MasterKeys) -> DataKeys:
        return SqlDataKeys(master, self.datastore, self.dialect)

    def _rows(self, statement: str, params: Sequence[Any]) -> list[Any]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, params)
            return list(cursor.fetchall())

    def _linked(self, query: str, params: list[Any], topics: int) -> list[Linked]:
        statement = query.format(events=self.events_table_name, topics=",".join("?" * topics))
        return [
            (
                Notification(
                    id=int(row["notification_id"]),
                    originator_id=as_uuid(row["originator_id"]),
                    originator_version=int(row["originator_version"]),
                    topic=row["topic"],
                    state=bytes(row["state"]),
                ),
                None if row["hash"] is None else (row["prev_hash"], row["hash"]),
            )
            for row in self._rows(statement, params)
        ]

    def _count(self, query: str, params: list[Any], topics: int) -> int:
        statement = query.format(events=self.events_table_name, topics=",".join("?" * topics))
        rows = self._rows(statement, params)
        return int(rows[0]["n"]) if rows else 0

    def _pairs(self, count: int) -> str:
        """``count`` placeholders of (id, version) rows for a ``VALUES`` list."""
        mark, cast = self.mark, self.uuid_cast
        return ",".join([f"({mark}{cast}, {mark}{'::bigint' if cast else ''})"] * count)

    def positions(self, refs: Sequence[Ref]) -> dict[Ref, int]:
        unique = list(dict.fromkeys(refs))
        found: dict[Ref, int] = {}
        for chunk in chunks(unique):
            rows = self._rows(
                f"WITH w(id, v) AS (VALUES {self._pairs(len(chunk))}) "
                f"SELECT e.originator_id, e.originator_version, e.{self.position} AS position "
                f"FROM {self.events_table_name} e "
                "JOIN w ON e.originator_id = w.id AND e.originator_version = w.v",
                [value for i, version in chunk for value in (self.id_param(i), version)],
            )
            for row in rows:
                ref = (as_uuid(row["originator_id"]), int(row["originator_version"]))
                found[ref] = int(row["position"])
        return found

    def latest(self, aggregate_ids: Sequence[UUID], versions: dict[UUID, int]) -> Latest:
        """Two queries (:mod:`infra.bulk_load`)."""
        uuid_ids(aggregate_ids)
        mark, cast, key = self.mark, self.uuid_cast, self.id_param
        events_table, snapshots_table = self.events_table_name, self.snapshots_table
        cold = [i for i in aggregate_ids if i not in versions]
        snapshots: dict[UUID, StoredEvent] = {}
        if cold:
            marks = ",".join([f"{mark}{cast}"] * len(cold))
            rows = self._rows(
                f"SELECT s.originator_id, s.originator_version, s.topic, s.state FROM {snapshots_table} s "
                f"JOIN (SELECT originator_id, MAX(originator_version) AS v FROM {snapshots_table} "
                f"WHERE originator_id IN ({marks}) GROUP BY originator_id) m "
                "ON s.originator_id = m.originator_id AND s.originator_version = m.v",
                [key(i) for i in cold],
            )
            snapshots = {as_uuid(row.originator_id): row for row in stored_rows(rows)}
        since = {i: s.originator_version for i, s in snapshots.items()} | versions
        pairs = self._pairs(len(aggregate_ids))
        events: dict[UUID, list[StoredEvent]] = {}
        rows = self._rows(
            f"WITH w(id, v) AS (VALUES {pairs}) "
            f"SELECT e.originator_id, e.originator_version, e.topic, e.state FROM {events_table} e "
            "JOIN w ON e.originator_id = w.id AND e.originator_version > w.v "
            "ORDER BY e.originator_id, e.originator_version",
            [value for i in aggregate_ids for value in (key(i), since.get(i, 0))],
        )
        for row in stored_rows(rows):
            events.setdefault(as_uuid(row.originator_id), []).append(row)
        return snapshots, events
