"""The store collects a save's events by class exactly as eventsourcing's own collection does."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import ProcessingEvent

from domain.errors import EmailTaken
from domain.indexes import Reservation
from infra.store import EventStore, _ByClass

IDS = [uuid4() for _ in range(4)]


def _objects() -> list[Any]:
    """Two aggregates (one with two pending events), a None, and a loose event between them."""
    first, second, loose_owner = (Reservation.open(i) for i in IDS[:3])
    first.reserve(IDS[3], lambda holder: EmailTaken("a@b.example", holder))
    loose = loose_owner.collect_events()[0]
    return [first, None, loose, second]


def _shape(events: list[Any]) -> list[tuple[type, UUID, int]]:
    return [(type(e), e.originator_id, e.originator_version) for e in events]


def test_the_same_events_and_aggregates_in_the_same_order() -> None:
    ours, theirs = _ByClass(), ProcessingEvent[UUID]()
    mine, library = _objects(), _objects()
    ours.collect_events(*mine, note=1)
    theirs.collect_events(*library, note=1)
    assert _shape(ours.events) == _shape(theirs.events)
    assert [(IDS[0], 1), (IDS[0], 2), (IDS[2], 1), (IDS[1], 1)] == [
        (i, v) for _, i, v in _shape(ours.events)
    ]
    assert list(ours.aggregates) == list(theirs.aggregates) == [IDS[0], IDS[1]]
    assert list(ours.aggregates.values()) == [mine[0], mine[3]]
    assert ours.saved_kwargs == theirs.saved_kwargs == {"note": 1}
    assert not mine[0].pending_events and not mine[3].pending_events  # taken, as the library


def test_a_saved_batch_is_stored_in_that_order() -> None:
    store = EventStore("memory://")
    try:
        recordings = store.save(*_objects())
        stored = [
            (r.domain_event.originator_id, r.domain_event.originator_version) for r in recordings
        ]
        assert stored == [(IDS[0], 1), (IDS[0], 2), (IDS[2], 1), (IDS[1], 1)]
    finally:
        store.close()
