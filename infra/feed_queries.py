"""Customer events with their hash-chain links, read in one query per batch.

eventsourcing reads the notification log without our ``event_hashes`` table; the feeds (relay,
projections, rebuilds, audit export) need both, so the backends (:mod:`infra.backends`) join
them; these are the reads the feeds make, with their defaults:

* :func:`in_log_order`: after a position, in global order (the relay and live feeds; the
  read models' feed adds the segment events, see ``FEED_TOPICS``);
* :func:`by_customer`: up to a position, grouped by customer in version order (rebuilds: a
  read model then loads and writes each customer's rows about once);
* :func:`count_after`: how many events of some topics follow a position (lag, exactly).

Index aggregates (email, idempotency) are always left out.
"""

from __future__ import annotations

from uuid import UUID

from infra.backends.base import START, Linked, Resume
from infra.store import CUSTOMER_TOPICS, EventStore

__all__ = ["START", "Linked", "Resume", "by_customer", "count_after", "in_log_order"]


def in_log_order(
    store: EventStore, after: int, limit: int, topics: list[str] = CUSTOMER_TOPICS
) -> list[Linked]:
    """Up to ``limit`` events of ``topics`` (customer events unless told) at positions after
    ``after``, in log order."""
    return store.backend.in_log_order(topics, after, limit)


def by_customer(
    store: EventStore, after: Resume, limit: int, until: int, before: UUID | None = None
) -> list[Linked]:
    """Up to ``limit`` customer events at positions ``<= until``, ordered by (customer id,
    version), starting after ``after`` (:data:`START` first, then the last one returned) and,
    with ``before``, only of customers whose id sorts below it (a range of customers)."""
    return store.backend.by_customer(CUSTOMER_TOPICS, after, limit, until, before)


def count_after(store: EventStore, after: int, topics: list[str] = CUSTOMER_TOPICS) -> int:
    """Exactly how many events of ``topics`` are at positions after ``after`` (no cap: a lag
    of 94,280 is 94,280). Counts over the position index, so it costs the backlog, not the log."""
    return store.backend.count_after(topics, after)
