"""What clientele needs of an event-store backend beyond eventsourcing's recorders.

Each backend module (:mod:`.postgres`, :mod:`.sqlite`, :mod:`.memory`) defines an application
recorder that subclasses eventsourcing's recorder of that backend AND :class:`StoreBackend`:
the extra tables are written in its insert (hash links, shredded keys, dropped snapshots, in the
events' transaction) and the extra reads are its methods. The backend is chosen once, from the
database URL (:func:`infra.backends.store_environment`); callers use ``EventStore.backend`` and
never test which one it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent

from infra.data_keys import DataKeys, MasterKeys

Chain = tuple[str, str]  # (prev_hash, hash)
Linked = tuple[Notification, Chain | None]
# (position, originator id as dashed text, version, topic, state, prev_hash, hash): an event of
# the log with its hash link as plain values, no object per event (what the relay reads)
LogRow = tuple[int, str, int, str, bytes, str | None, str | None]
Resume = tuple[UUID, int]  # (customer id, version) of the last event read
START: Resume = (UUID(int=0), 0)
Latest = tuple[dict[UUID, StoredEvent], dict[UUID, list[StoredEvent]]]  # snapshots, newer events
Positioned = list[tuple[int, StoredEvent]]  # (position, stored event)
# (position, version, topic, state): one aggregate's stored event as plain values
HistoryRow = tuple[int, int, str, bytes]
Ref = tuple[UUID, int]  # (aggregate id, version) of one stored event


class StoreBackend(ABC):
    """clientele's extensions of an application recorder (the store contract's port)."""

    @property
    def notify_channel(self) -> str | None:
        """The channel a listener is woken on after each write (PostgreSQL ``LISTEN``), or
        None where there is none and followers poll."""
        return None

    @abstractmethod
    def data_keys(self, master: MasterKeys) -> DataKeys:
        """The customers' data keys, kept beside the events (the recorder shreds them)."""

    @abstractmethod
    def in_log_order(self, topics: Sequence[str], after: int, limit: int) -> list[Linked]:
        """Up to ``limit`` events of ``topics`` at positions after ``after``, in log order,
        each with its hash link."""

    def log_rows(self, topics: Sequence[str], after: int, limit: int) -> list[LogRow]:
        """:meth:`in_log_order`'s events as :data:`LogRow` tuples (a backend may read them
        without making a notification per event)."""
        return [log_row(n, chain) for n, chain in self.in_log_order(topics, after, limit)]

    @abstractmethod
    def by_customer(
        self, topics: Sequence[str], after: Resume, limit: int, until: int, before: UUID | None
    ) -> list[Linked]:
        """Up to ``limit`` events of ``topics`` at positions ``<= until``, ordered by (customer
        id, version), after ``after``, and with ``before`` only of ids that sort below it."""

    @abstractmethod
    def count_after(self, topics: Sequence[str], after: int) -> int:
        """Exactly how many events of ``topics`` are at positions after ``after``."""

    @abstractmethod
    def positioned(self, aggregate_id: UUID, version: int | None) -> Positioned:
        """(position, stored event) of one aggregate's events (or of one version), in order."""

    @abstractmethod
    def head_and_rows(self, aggregate_id: UUID) -> tuple[int, list[HistoryRow]]:
        """The log's head (0 when empty) and one aggregate's events as :data:`HistoryRow` tuples
        in version order, on one connection (time travel's one exchange). Every row's
        position is at most the head (the erasure watch looks up to it before they are
        opened)."""

    @abstractmethod
    def version_at(self, aggregate_id: UUID, position: int) -> int:
        """The aggregate's newest version among its events at positions ``<= position`` (0:
        none): what a read model must have applied of it to be current up to ``position``."""

    @abstractmethod
    def positions(self, refs: Sequence[Ref]) -> dict[Ref, int]:
        """Global positions of the stored events among ``refs`` (absent ones left out), in a
        query per 500."""

    @abstractmethod
    def latest(self, aggregate_ids: Sequence[UUID], versions: dict[UUID, int]) -> Latest:
        """Newest snapshots of the aggregates not in ``versions``, then each aggregate's events
        after its snapshot (or after its version in ``versions``). The ids are ``uuid.UUID``s
        (:func:`uuid_ids`: :class:`TypeError` otherwise, on every backend)."""


def uuid_ids(aggregate_ids: Sequence[Any]) -> None:
    """:class:`TypeError` unless every aggregate id is a ``uuid.UUID``: ids as text would
    match nothing on one backend and fail deep inside another's parameters."""
    for aggregate_id in aggregate_ids:
        if not isinstance(aggregate_id, UUID):
            kind = type(aggregate_id).__name__
            raise TypeError(f"aggregate ids are uuid.UUID, not {kind}: {aggregate_id!r}")


def as_uuid(value: Any) -> UUID:
    """An originator id as read from any backend (UUID, dashed or hex text)."""
    return value if isinstance(value, UUID) else UUID(str(value))


def log_row(notification: Notification, chain: Chain | None) -> LogRow:
    """One linked event as a :data:`LogRow`."""
    prev_hash, hash_ = chain if chain is not None else (None, None)
    return (
        notification.id,
        str(as_uuid(notification.originator_id)),
        notification.originator_version,
        notification.topic,
        notification.state,
        prev_hash,
        hash_,
    )


def stored_rows(rows: Iterable[Any]) -> list[StoredEvent]:
    """Stored events from rows with ``originator_id, originator_version, topic, state`` (each
    distinct id parsed once: a batch holds many events of each customer)."""
    ids: dict[Any, UUID] = {}
    stored = []
    for row in rows:
        raw = row["originator_id"]
        if (originator_id := ids.get(raw)) is None:
            originator_id = ids[raw] = as_uuid(raw)
        version, topic, state = int(row["originator_version"]), row["topic"], bytes(row["state"])
        stored.append(StoredEvent(originator_id, version, topic, state))
    return stored


def positioned_rows(aggregate_id: UUID, rows: Iterable[Sequence[Any]]) -> Positioned:
    """(position, stored event) from ``(position, version, topic, state)`` rows."""
    return [
        (int(position), StoredEvent(aggregate_id, int(version), topic, bytes(state)))
        for position, version, topic, state in rows
    ]
