"""The audit diff compares, and the profiles' tag and external-id rows are rewritten for,
only the fields an event can change (:func:`projections.profile_fold.changed_fields`): over a varied generated store, every
event's diff equals the diff of the whole profile before and after it, and every field an
event changed is one it names."""

from __future__ import annotations

import copy
from typing import Any

from consumers.store_feed import StoreFeed
from infra.store import EventStore
from projections import profile_fold
from projections.audit_history import NOT_AUDITED, diff
from tests.published_support import generated_store


def test_the_fields_named_hold_every_change_of_every_event() -> None:
    store = EventStore("memory://", snapshot_interval=5)
    generated_store(store, seed=9)
    states: dict[str, dict[str, Any]] = {}
    named = 0
    for envelope in StoreFeed(store).read(0, 100_000):
        state = states.setdefault(envelope.customer_key, profile_fold.empty(envelope.customer_id))
        before = copy.deepcopy(state)
        profile_fold.apply(state, envelope)
        whole = diff(before, state)
        fields = profile_fold.changed_fields(envelope)
        if fields is None:
            continue
        named += 1
        moved = {k for k in before.keys() | state.keys() if before.get(k) != state.get(k)}
        assert moved - NOT_AUDITED <= set(fields), envelope.type
        only = diff(
            {k: before[k] for k in fields if k in before},
            {k: state[k] for k in fields if k in state},
        )
        assert only == whole, envelope.type
    assert named > 100
    store.close()
