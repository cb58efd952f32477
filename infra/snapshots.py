"""When a customer is snapshotted, and what loading one reads (its *footprint*).

A customer snapshot holds the whole state: every purchase, every absorbed duplicate. So a
snapshot of a customer who keeps growing costs more each time. eventsourcing's own rule takes
one at every version divisible by the interval, reloading the aggregate from the store each
time; on a customer with 7,000 purchases a batch of 1,000 purchases took 20 snapshots of
about 1.5 MB each and spent 97 % of its time on them (issue 13: 0.45 s for the first batch,
3.6 s for the seventh).

Here a save snapshots a customer at most once, from the aggregate it has just stored (no
reload), and only when, since the newest snapshot, there are at least ``interval`` events AND
at least as many stored bytes of events as that snapshot has (the first snapshot: at
``interval`` events). Hence:

* every snapshot is followed by at least as many bytes of events before the next one, so
  the snapshot bytes written never exceed the event bytes written (plus the newest snapshot):
  a command's amortised snapshot cost is bounded by the size of its own events, whatever the
  length of the history;
* a load from the store reads at most the snapshot and about as many bytes of newer events
  again (plus one save's worth and ``interval`` events): about twice the state's size;
* small customers, whose state is smaller than ``interval`` events, are snapshotted every
  ``interval`` events as before.

A :class:`Footprint` (the newest snapshot's version and size, the count and size of the
events after it, and the digest of the newest event's stored bytes) is learnt when a customer is loaded or stored. The writer keeps them in a
bounded :class:`Footprints` map: they only decide *when* to snapshot, never what a command
sees, so a lost or stale one costs at most an early, late or skipped snapshot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.persistence import StoredEvent


@dataclass(slots=True)
class Footprint:
    """What a load of one customer reads: its newest snapshot, then the events after it.

    Sizes are stored bytes (``state`` of the rows); versions are the customer's.
    """

    version: int  # newest version accounted for
    snapshot_version: int  # 0: no snapshot
    snapshot_bytes: int
    events: int  # events after the snapshot
    event_bytes: int
    digest: bytes | None = None  # :func:`row_digest` of the event at ``version`` (None: unread)

    @property
    def load_bytes(self) -> int:
        """Bytes a load from the store reads."""
        return self.snapshot_bytes + self.event_bytes


class Footprints:
    """Footprints of the customers this process wrote or loaded (bounded), and the policy."""

    def __init__(self, interval: int, capacity: int = 100_000) -> None:
        self.interval = interval
        self.capacity = capacity
        self._known: dict[UUID, Footprint] = {}

    def get(self, customer_id: UUID) -> Footprint | None:
        return self._known.get(customer_id)

    def loaded(
        self, customer_id: UUID, snapshot: StoredEvent | None, events: Sequence[StoredEvent]
    ) -> None:
        """Learn a footprint from what a load read: the newest snapshot (if any), then every
        event after it, in version order."""
        since = snapshot.originator_version if snapshot is not None else 0
        if len(self._known) >= self.capacity:
            self._known.clear()
        self._known[customer_id] = Footprint(
            version=events[-1].originator_version if events else since,
            snapshot_version=since,
            snapshot_bytes=len(snapshot.state) if snapshot is not None else 0,
            events=len(events),
            event_bytes=sum(len(e.state) for e in events),
            digest=row_digest(events[-1]) if events else None,
        )

    def extend(self, customer_id: UUID, events: Sequence[StoredEvent]) -> bool:
        """Count events that follow the known footprint (read or stored), in version order.

        Returns False, and forgets the footprint, when it is unknown or they do not follow on.
        """
        footprint = self._known.get(customer_id)
        if footprint is None or not events:
            return footprint is not None
        if events[0].originator_version != footprint.version + 1:
            del self._known[customer_id]
            return False
        footprint.version = events[-1].originator_version
        footprint.events += len(events)
        footprint.event_bytes += sum(len(e.state) for e in events)
        footprint.digest = row_digest(events[-1])
        return True

    def due(self, customer_id: UUID) -> bool:
        """Whether the customer should be snapshotted now (module docstring)."""
        footprint = self._known.get(customer_id)
        return (
            self.interval > 0
            and footprint is not None
            and footprint.events >= self.interval
            and footprint.event_bytes >= footprint.snapshot_bytes
        )

    def snapshotted(self, customer_id: UUID, version: int, size: int) -> None:
        """A snapshot of ``size`` bytes was stored at ``version`` (the newest version)."""
        before = self._known.get(customer_id)
        digest = before.digest if before is not None and before.version == version else None
        self._known[customer_id] = Footprint(version, version, size, 0, 0, digest)

    def forget(self, customer_ids: Iterable[UUID]) -> None:
        """Drop footprints (erased customers: their snapshots are gone)."""
        for customer_id in customer_ids:
            self._known.pop(customer_id, None)


def row_digest(row: StoredEvent) -> bytes:
    """16-byte BLAKE2b digest of a stored event's bytes (``state``): tells two events stored
    at the same version apart (a store restored, then written again)."""
    return hashlib.blake2b(row.state, digest_size=16).digest()
