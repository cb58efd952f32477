"""Unit of work: the aggregates one store transaction reads and writes.

Every aggregate is loaded at most once per unit; everything pending is saved by one
``EventStore.save`` call, i.e. one database transaction (group commit). A savepoint lets a
batch undo one failed command's in-memory changes without touching the others. With an
:class:`~commands.aggregate_cache.AggregateCache`, customers come from it (checked and brought
up to date) and go back to it after a successful commit.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Recording

from commands.aggregate_cache import AggregateCache
from domain.customer import Customer
from domain.errors import CustomerNotFound, DomainError
from domain.events import Erased
from domain.indexes import DataCopies, IdempotencyRecord, Reservation
from domain.values import Status
from infra.bulk_load import load_many
from infra.store import EventStore

IDEMPOTENCY_NAMESPACE = UUID("0b5f4f0e-8d8a-5c1e-8f55-7f1f0c2f3a61")
COPIES_NAMESPACE = UUID("5e0c6a1d-2b7f-5f3e-9a41-3c8d7e6f1b22")
_SAVE_ORDER = {Customer: 0, Reservation: 1, IdempotencyRecord: 2}
MAX_MERGE_HOPS = 1000  # merges never form a cycle; the bound only guards bad data


@dataclass
class Savepoint:
    """Filled as the unit is used: for every aggregate touched after the savepoint, its
    number of pending events at the savepoint (None: it was not in the unit then)."""

    pending: dict[UUID, int | None] = field(default_factory=dict)


class UnitOfWork:
    """Aggregates touched by one or more commands, saved together by :meth:`commit`."""

    def __init__(
        self, store: EventStore, index_key: bytes, cache: AggregateCache | None = None
    ) -> None:
        self.store = store
        self._index_key = index_key
        self._cache = cache
        self._aggregates: dict[UUID, Aggregate | None] = {}
        self._stored: set[UUID] = set()
        self._savepoint: Savepoint | None = None
        self._reservation_ids: dict[str, UUID] = {}

    # ----------------------------------------------------------------- loading

    def _touch(self, aggregate_id: UUID) -> None:
        """Remember an aggregate's state at the savepoint before it may change."""
        savepoint = self._savepoint
        if savepoint is not None and aggregate_id not in savepoint.pending:
            aggregate = self._aggregates.get(aggregate_id)
            savepoint.pending[aggregate_id] = (
                None if aggregate is None else len(aggregate.pending_events)
            )

    def _load(self, aggregate_id: UUID) -> Aggregate | None:
        self._touch(aggregate_id)
        if aggregate_id not in self._aggregates:  # most are prefetched: no call for those
            self.prefetch([aggregate_id])
        return self._aggregates[aggregate_id]

    def prefetch(self, aggregate_ids: Iterable[UUID]) -> None:
        """Load many aggregates in a few queries (absent ones are remembered as absent)."""
        wanted = [i for i in dict.fromkeys(aggregate_ids) if i not in self._aggregates]
        if not wanted:
            return
        known = self._cache.take(wanted) if self._cache is not None else {}
        found = load_many(self.store, wanted, known)
        for aggregate_id in wanted:
            aggregate = self._aggregates[aggregate_id] = found.get(aggregate_id)
            if aggregate is not None:
                self._stored.add(aggregate_id)

    def idempotency_id(self, key: str) -> UUID:
        """Id of the record that remembers an idempotency key."""
        return uuid5(IDEMPOTENCY_NAMESPACE, key)

    def customer(self, customer_id: UUID) -> Customer:
        """The customer, loaded once per unit; :class:`CustomerNotFound` if absent."""
        aggregate = self._load(customer_id)
        if not isinstance(aggregate, Customer):
            raise CustomerNotFound(customer_id)
        return aggregate

    def exists(self, aggregate_id: UUID) -> bool:
        return self._load(aggregate_id) is not None

    def _reservation_id(self, value: str) -> UUID:
        """The keyed digest of ``value``, once per unit (the prefetch and the handler ask)."""
        known = self._reservation_ids.get(value)
        if known is None:
            digest = hmac.digest(self._index_key, value.encode(), "sha256")  # one-shot, in C
            known = self._reservation_ids[value] = UUID(bytes=digest[:16], version=4)
        return known

    def _reservation(self, reservation_id: UUID) -> Reservation:
        aggregate = self._load(reservation_id)
        if aggregate is None:
            aggregate = Reservation.open(reservation_id)
            self._aggregates[reservation_id] = aggregate
        assert isinstance(aggregate, Reservation)
        return aggregate

    def reserve(
        self, reservation_id: UUID, customer_id: UUID, taken: Callable[[UUID], DomainError]
    ) -> None:
        """Give a reservation row's value to ``customer_id`` (``taken(holder)`` is raised if
        another holds it); a row that never existed is claimed, one event
        (:meth:`Reservation.claim`)."""
        aggregate = self._load(reservation_id)
        if aggregate is None:
            self._aggregates[reservation_id] = Reservation.claim(reservation_id, customer_id)
            return
        assert isinstance(aggregate, Reservation)
        aggregate.reserve(customer_id, taken)

    def email_id(self, email: str) -> UUID:
        """Id of the reservation row of a normalised email."""
        return self._reservation_id(email)

    def email_reservation(self, email: str) -> Reservation:
        """The reservation row of a normalised email (opened if it never existed)."""
        return self._reservation(self.email_id(email))

    def external_id(self, system: str, external_id: str) -> UUID:
        """Id of the reservation row of one external id (canonical forms). The digested text
        has a NUL no email can hold, so it never meets an email's row."""
        return self._reservation_id(f"external\x00{system}\x00{external_id}")

    def external_reservation(self, system: str, external_id: str) -> Reservation:
        """The reservation row of one external id (opened if it never existed)."""
        return self._reservation(self.external_id(system, external_id))

    def external_holder(self, system: str, external_id: str) -> UUID | None:
        """Who holds an external id (a merged holder included), or None; opens nothing."""
        aggregate = self._load(self.external_id(system, external_id))
        return aggregate.holder if isinstance(aggregate, Reservation) else None

    def final_survivor(self, customer: Customer) -> Customer:
        """``customer``, or the last customer of its merge chain (A → B → C: C for A)."""
        for _ in range(MAX_MERGE_HOPS):
            if customer.status != Status.MERGED or customer.merged_into is None:
                break
            customer = self.customer(UUID(customer.merged_into))
        return customer

    def data_copies(self, owner: UUID) -> DataCopies:
        """The index of who holds ``owner``'s data under their key (opened if new)."""
        copies_id = uuid5(COPIES_NAMESPACE, str(owner))
        aggregate = self._load(copies_id)
        if aggregate is None:
            aggregate = DataCopies.open(copies_id)
            self._aggregates[copies_id] = aggregate
        assert isinstance(aggregate, DataCopies)
        return aggregate

    def copies_of(self, owner: UUID) -> list[str]:
        """Ids of the customers whose streams hold ``owner``'s data under their key."""
        aggregate = self._load(uuid5(COPIES_NAMESPACE, str(owner)))
        return list(aggregate.holders) if isinstance(aggregate, DataCopies) else []

    def idempotency_record(self, key: str) -> tuple[UUID, IdempotencyRecord | None]:
        record_id = self.idempotency_id(key)
        aggregate = self._load(record_id)
        assert aggregate is None or isinstance(aggregate, IdempotencyRecord)
        return record_id, aggregate

    def add(self, aggregate: Aggregate) -> None:
        """Track a newly created aggregate."""
        self._touch(aggregate.id)
        self._aggregates[aggregate.id] = aggregate

    # -------------------------------------------------------------- savepoints

    def savepoint(self) -> Savepoint:
        """Start tracking what the next command touches (cost: what it touches, not the unit)."""
        self._savepoint = Savepoint()
        return self._savepoint

    def events_since(self, savepoint: Savepoint) -> list[Any]:
        """Events triggered since ``savepoint``, in trigger order per aggregate."""
        new: list[Any] = []
        for aggregate_id, before in savepoint.pending.items():
            aggregate = self._aggregates.get(aggregate_id)
            if aggregate is not None:
                new.extend(aggregate.pending_events[before or 0 :])
        return new

    def rollback(self, savepoint: Savepoint) -> None:
        """Forget in-memory changes made after ``savepoint``."""
        for aggregate_id in list(savepoint.pending):
            aggregate = self._aggregates.get(aggregate_id)
            if aggregate is None:
                continue
            keep = savepoint.pending[aggregate_id]
            if keep is None:
                if aggregate_id in self._stored:
                    keep = 0
                else:
                    self._aggregates[aggregate_id] = None
                    continue
            if len(aggregate.pending_events) == keep:
                continue
            kept = aggregate.pending_events[:keep]
            rebuilt: Any = (
                load_many(self.store, [aggregate_id]).get(aggregate_id)
                if aggregate_id in self._stored
                else None
            )
            for event in kept:
                rebuilt = event.mutate(rebuilt)
            if rebuilt is not None:
                rebuilt.pending_events[:] = kept
            self._aggregates[aggregate_id] = rebuilt

    # ------------------------------------------------------------------ commit

    def commit(self) -> list[Recording[UUID]]:
        """Save everything pending in one transaction, then hand the customers to the cache.

        Idempotency records go last, so each one's position is the newest of its command.
        """
        changed = [a for a in self._aggregates.values() if a is not None and a.pending_events]
        changed.sort(key=lambda a: _SAVE_ORDER.get(type(a), 1))
        recordings = self.store.save(*changed) if changed else []
        if self._cache is not None:
            customers = [a for a in self._aggregates.values() if isinstance(a, Customer)]
            self._cache.keep(customers, self.store.footprints)
            # An erasure shreds the person's copies on other streams without an event there.
            erased = [r.domain_event for r in recordings if isinstance(r.domain_event, Erased)]
            self._cache.drop(UUID(c) for e in erased for c in e.copies_at)
        return recordings
