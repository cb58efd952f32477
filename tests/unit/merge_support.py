"""Helpers shared by the merge tests."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from consumers.store_feed import StoreFeed
from infra.store import EventStore
from projections import profile_fold


def folded(store: EventStore, customer: UUID) -> dict[str, Any]:
    """The profile state of ``customer`` folded from the store's feed (what read models see)."""
    state = profile_fold.empty(customer)
    for envelope in StoreFeed(store).read(0, 1_000_000):
        if envelope.customer_id == customer:
            profile_fold.apply(state, envelope)
    return state
