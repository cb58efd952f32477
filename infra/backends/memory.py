"""The in-memory backend (``memory://``, unit tests): eventsourcing's POPO recorder, keeping what
the SQL backends keep in their extra tables — hash links and data keys — in the recorder itself.

As on SQL, an insert writes the links of its events and, for an erasure, shreds the customer's
key and drops the snapshots of the customer and of the holders of copies of their data, under
the recorder's lock: the store cannot tell this backend from the others (the store contract runs
on it). Only what needs a second process — writers racing through their own connections — is
out of its reach: each ``memory://`` store is its own database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import AggregateRecorder, ApplicationRecorder, StoredEvent
from eventsourcing.popo import POPOAggregateRecorder, POPOApplicationRecorder, POPOFactory

from infra.backends.base import (
    Chain,
    HistoryRow,
    Latest,
    Linked,
    Positioned,
    Ref,
    Resume,
    StoreBackend,
    as_uuid,
    positioned_rows,
    uuid_ids,
)
from infra.data_keys import DataKeys, MasterKeys, MemoryDataKeys, Row, erasure_targets
from infra.tamper_evidence.chain import chain


class MemoryRecorder(StoreBackend, POPOApplicationRecorder):
    """Events, their hash links and the customers' data keys, in process."""

    def __init__(self) -> None:
        super().__init__()
        self.links: dict[tuple[str, int], Chain] = {}  # (id hex, version) -> (prev_hash, hash)
        self.key_rows: dict[str, Row] = {}
        self.snapshot_recorder: POPOAggregateRecorder | None = None  # set by the factory

    def _insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        with self._database_lock:
            positions = super()._insert_events(stored_events, **kwargs)  # conflicts raise first
            for key, version, previous, digest in chain(stored_events, self._heads):
                self.links[key, version] = (previous, digest)
            erased, dropped = erasure_targets(stored_events)
            self.key_rows.update({customer: (customer, None, None) for customer in erased})
            if self.snapshot_recorder is not None:
                for customer_id in dropped:
                    self.snapshot_recorder._stored_events_index.pop(str(customer_id), None)
            return positions

    def _heads(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
        return {pair: self.links[pair][1] for pair in pairs if pair in self.links}

    def _link(self, notification: Any) -> Chain | None:
        return self.links.get(
            (as_uuid(notification.originator_id).hex, notification.originator_version)
        )

    def data_keys(self, master: MasterKeys) -> DataKeys:
        return MemoryDataKeys(master, self.key_rows)

    def in_log_order(self, topics: Sequence[str], after: int, limit: int) -> list[Linked]:
        found = self.select_notifications(after, limit, topics=topics, inclusive_of_start=False)
        return [(n, self._link(n)) for n in found]

    def by_customer(
        self, topics: Sequence[str], after: Resume, limit: int, until: int, before: UUID | None
    ) -> list[Linked]:
        everything = self.select_notifications(0, until, topics=topics, inclusive_of_start=False)
        ordered = sorted(
            (n for n in everything if n.id <= until),
            key=lambda n: (as_uuid(n.originator_id), n.originator_version),
        )
        later = [
            n
            for n in ordered
            if (as_uuid(n.originator_id), n.originator_version) > after
            and (before is None or as_uuid(n.originator_id) < before)
        ]
        return [(n, self._link(n)) for n in later[:limit]]

    def count_after(self, topics: Sequence[str], after: int) -> int:
        head = self.max_notification_id() or 0
        return len(self.select_notifications(after, head, topics=topics, inclusive_of_start=False))

    def positioned(self, aggregate_id: UUID, version: int | None) -> Positioned:
        rows = self.head_and_rows(aggregate_id)[1]
        return positioned_rows(aggregate_id, [r for r in rows if version in (None, r[1])])

    def head_and_rows(self, aggregate_id: UUID) -> tuple[int, list[HistoryRow]]:
        head = self.max_notification_id() or 0
        everything = self.select_notifications(None, head)
        rows = [
            (n.id, n.originator_version, n.topic, n.state)
            for n in everything
            if n.originator_id == aggregate_id
        ]
        return head, rows

    def version_at(self, aggregate_id: UUID, position: int) -> int:
        rows = self.head_and_rows(aggregate_id)[1]
        return max((version for at, version, _, _ in rows if at <= position), default=0)

    def positions(self, refs: Sequence[Ref]) -> dict[Ref, int]:
        wanted = set(refs)
        everything = self.select_notifications(None, self.max_notification_id() or 0)
        found = {(as_uuid(n.originator_id), n.originator_version): n.id for n in everything}
        return {ref: position for ref, position in found.items() if ref in wanted}

    def latest(self, aggregate_ids: Sequence[UUID], versions: dict[UUID, int]) -> Latest:
        """Through the recorders' own queries, aggregate by aggregate."""
        uuid_ids(aggregate_ids)
        snapshots: dict[UUID, StoredEvent] = {}
        events: dict[UUID, list[StoredEvent]] = {}
        for aggregate_id in aggregate_ids:
            snapshot = None if aggregate_id in versions else self._newest_snapshot(aggregate_id)
            if snapshot is not None:
                snapshots[aggregate_id] = snapshot
            after = versions.get(aggregate_id, snapshot.originator_version if snapshot else 0)
            newer = list(self.select_events(aggregate_id, gt=after or None))
            if newer:
                events[aggregate_id] = newer
        return snapshots, events

    def _newest_snapshot(self, aggregate_id: UUID) -> StoredEvent | None:
        if self.snapshot_recorder is None:
            return None
        rows = self.snapshot_recorder.select_events(aggregate_id, desc=True, limit=1)
        return rows[0] if rows else None


class Factory(POPOFactory):
    """``PERSISTENCE_MODULE=infra.backends.memory:Factory``: eventsourcing's in-memory factory,
    whose events recorder knows the snapshot recorder (an erasure drops snapshots)."""

    _events: MemoryRecorder | None = None

    def application_recorder(self) -> ApplicationRecorder:
        self._events = MemoryRecorder()
        return self._events

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        recorder = POPOAggregateRecorder()
        if purpose == "snapshots" and self._events is not None:
            self._events.snapshot_recorder = recorder
        return recorder
