"""Reading envelopes straight from the event store's notification log.

Two feeds share the log: read models are fed customer events AND segment events (definitions
and refreshes, see :mod:`domain.segment`) and the churn model's fits (:mod:`domain.churn_model`),
in global order; the relay publishes customer
events only (``customer.events`` carries nothing else).
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from eventsourcing.persistence import Notification

from domain.event_base import LoggedEvent
from infra import feed_queries
from infra.backends.base import Chain, LogRow, log_row
from infra.envelope import Envelope
from infra.feed_queries import Linked, Resume
from infra.published import LeanEncoder, Published
from infra.store import CUSTOMER_TOPICS, FEED_TOPICS, EventStore


class StoreFeed:
    """Events after a position, in global order, as envelopes with their hash links."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.lean = LeanEncoder(store.personal_mapper)

    def read(self, after: int, limit: int) -> list[Envelope]:
        """What read models are fed: customer and segment events, personal data opened."""
        linked = feed_queries.in_log_order(self.store, after, limit, FEED_TOPICS)
        return self.store.personal.open_envelopes(self._envelopes(linked))

    def read_sealed(self, after: int, limit: int) -> list[Envelope]:
        """Customer envelopes as published: personal data stays encrypted in ``sealed``."""
        return self._envelopes(feed_queries.in_log_order(self.store, after, limit))

    def read_published(self, after: int, limit: int) -> list[Published]:
        """What :meth:`read_sealed` reads, as the relay sends it: envelope bytes made straight
        from the stored rows (:mod:`infra.published`), the long way only for upcast events."""
        return self._published(self.store.backend.log_rows(CUSTOMER_TOPICS, after, limit))

    def read_by_customer(
        self, after: Resume, limit: int, until: int, before: UUID | None = None
    ) -> list[Envelope]:
        """Opened customer envelopes at positions ``<= until`` grouped by customer, in version
        order, after the (customer id, version) ``after`` (``START`` first) and below the
        customer id ``before``: for rebuilds."""
        linked = feed_queries.by_customer(self.store, after, limit, until, before)
        return self.store.personal.open_envelopes(self._envelopes(linked))

    def customer_events(
        self,
        customer_id: UUID,
        after_version: int,
        limit: int,
        *,
        until: int | None = None,
    ) -> list[Envelope]:
        """One customer's opened envelopes after ``after_version``, in version order, at
        positions ``<= until`` (default: all)."""
        envelopes = self._envelopes(self._customer(customer_id, after_version, limit, until))
        return self.store.personal.open_envelopes(envelopes)

    def customer_published(
        self, customer_id: UUID, after_version: int, limit: int, *, until: int | None = None
    ) -> list[Published]:
        """:meth:`customer_events` as the relay sends them (personal data sealed): for
        re-driving a parked customer."""
        linked = self._customer(customer_id, after_version, limit, until)
        return self._published([log_row(notification, chain) for notification, chain in linked])

    def _customer(
        self, customer_id: UUID, after_version: int, limit: int, until: int | None
    ) -> list[Linked]:
        last = (1 << 128) - 1
        before = UUID(int=customer_id.int + 1) if customer_id.int < last else None
        linked = feed_queries.by_customer(
            self.store,
            (customer_id, after_version),
            limit,
            self.head() if until is None else until,
            before,
        )
        return [link for link in linked if link[0].originator_id == customer_id]

    def _envelopes(self, linked: Sequence[Linked]) -> list[Envelope]:
        return [self._envelope(notification, chain) for notification, chain in linked]

    def _envelope(self, notification: Notification, chain: Chain | None) -> Envelope:
        event = self.store.personal_mapper.to_sealed_event(notification)
        assert isinstance(event, LoggedEvent)
        return Envelope.from_event(event, notification.id, chain)

    def _published(self, rows: Sequence[LogRow]) -> list[Published]:
        encode = self.lean.encode
        return [encode(row) or self._published_the_long_way(row) for row in rows]

    def _published_the_long_way(self, row: LogRow) -> Published:
        """Through the mapper (the upcasters): events of older class versions and the rest."""
        position, key, version, topic, state, prev_hash, hash_ = row
        notification = Notification(
            id=position,
            originator_id=UUID(key),
            originator_version=version,
            topic=topic,
            state=state,
        )
        chain = None if prev_hash is None or hash_ is None else (prev_hash, hash_)
        return Published.of(self._envelope(notification, chain))

    def head(self) -> int:
        """Position of the newest notification (customer event or index row)."""
        return self.store.head()

    def pending(self, after: int, *, customers_only: bool = False) -> int:
        """Exactly how many fed events follow ``after`` (never capped): the lag of a projection
        fed in log order; ``customers_only`` counts customer events (the relay's lag, and that
        of projections fed from ``customer.events``)."""
        topics = CUSTOMER_TOPICS if customers_only else FEED_TOPICS
        return feed_queries.count_after(self.store, after, topics)
