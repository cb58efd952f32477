"""Index aggregates that make cross-customer rules race-safe inside the event store itself.

Each is saved in the same store transaction as the customer events they guard; two writers
racing for the same index row collide on the store's (id, version) uniqueness, so exactly one
wins and the other retries against the fresh state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import DomainError, IdempotencyKeyReused


class Reservation(Aggregate):
    """Who (if anyone) holds a unique value: a normalised email, or one external id (system
    and id). Its id is a keyed digest of the value, never the value itself.

    Stored events name the class by its first name, ``EmailReservation`` (kept as an alias).
    """

    owner: str | None

    def __init__(self) -> None:
        """State is set by the creation event's ``apply``."""

    class Reserved(Aggregate.Event):
        TYPE: ClassVar[str] = "index.email_reserved"
        customer_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.owner = self.customer_id

    class Released(Aggregate.Event):
        TYPE: ClassVar[str] = "index.email_released"
        customer_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.owner = None

    class Opened(Aggregate.Created):
        TYPE: ClassVar[str] = "index.email_opened"

        def apply(self, aggregate: Any) -> None:
            aggregate.owner = None

    class Claimed(Aggregate.Created):
        """A row opened for its first holder: one event where ``Opened`` then ``Reserved``
        were two (a registration with an email stores two events, not three)."""

        TYPE: ClassVar[str] = "index.email_claimed"
        customer_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.owner = self.customer_id

    @classmethod
    def open(cls, reservation_id: UUID) -> Reservation:
        return cls._create(cls.Opened, id=reservation_id)

    @classmethod
    def claim(cls, reservation_id: UUID, customer_id: UUID) -> Reservation:
        """A new row, held by ``customer_id`` from its first event."""
        return cls._create(cls.Claimed, id=reservation_id, customer_id=str(customer_id))

    @property
    def holder(self) -> UUID | None:
        return None if self.owner is None else UUID(self.owner)

    def reserve(self, customer_id: UUID, taken: Callable[[UUID], DomainError]) -> None:
        """Give the value to ``customer_id``; another owner is ``taken(owner)``, raised."""
        if self.owner == str(customer_id):
            return
        if self.owner is not None:
            raise taken(UUID(self.owner))
        self.trigger_event(self.Reserved, customer_id=str(customer_id))

    def release(self, customer_id: UUID) -> None:
        """Free the value if ``customer_id`` holds it."""
        if self.owner == str(customer_id):
            self.trigger_event(self.Released, customer_id=str(customer_id))


EmailReservation = Reservation  # the topic of reservations stored before external ids


class IdempotencyRecord(Aggregate):
    """The first outcome of a command sent with an idempotency key.

    ``events`` lists the (customer id, version) of every customer event the command
    recorded, so a replay can answer with exactly the same position as the first time.
    """

    request_digest: str
    customer_id: str
    outcome_version: int
    events: list[list[Any]]

    def __init__(self) -> None:
        """State is set by the creation event's ``apply``."""

    class Recorded(Aggregate.Created):
        TYPE: ClassVar[str] = "index.idempotency_recorded"
        request_digest: str
        customer_id: str
        outcome_version: int
        events: list[list[Any]]

        def apply(self, aggregate: Any) -> None:
            aggregate.request_digest = self.request_digest
            aggregate.customer_id = self.customer_id
            aggregate.outcome_version = self.outcome_version
            aggregate.events = self.events

    @classmethod
    def record(
        cls,
        record_id: UUID,
        request_digest: str,
        customer_id: UUID,
        version: int,
        events: list[tuple[UUID, int]],
    ) -> IdempotencyRecord:
        return cls._create(
            cls.Recorded,
            id=record_id,
            request_digest=request_digest,
            customer_id=str(customer_id),
            outcome_version=version,
            events=[[str(aggregate_id), v] for aggregate_id, v in events],
        )

    def check(self, key: str, request_digest: str) -> None:
        """Same key with a different request is refused."""
        if request_digest != self.request_digest:
            raise IdempotencyKeyReused(key)


class DataCopies(Aggregate):
    """Which customers' streams hold personal data of one person, sealed with that person's key
    (what merges moved to survivors). Erasing the person names them in ``customer.erased``
    (``copies_at``), so their snapshots and read-model copies are dropped too."""

    holders: list[str]

    def __init__(self) -> None:
        """State is set by the creation event's ``apply``."""

    class Opened(Aggregate.Created):
        TYPE: ClassVar[str] = "index.data_copies_opened"

        def apply(self, aggregate: Any) -> None:
            aggregate.holders = []

    class Copied(Aggregate.Event):
        TYPE: ClassVar[str] = "index.data_copied"
        holder: str

        def apply(self, aggregate: Any) -> None:
            aggregate.holders = [*aggregate.holders, self.holder]

    @classmethod
    def open(cls, copies_id: UUID) -> DataCopies:
        return cls._create(cls.Opened, id=copies_id)

    def add(self, holder: UUID) -> None:
        """Remember that ``holder``'s stream holds data of this person (once)."""
        if str(holder) not in self.holders:
            self.trigger_event(self.Copied, holder=str(holder))
