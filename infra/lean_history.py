"""One customer's history as opened envelopes, straight from the stored bytes (time travel's
lean read path).

Time travel (``GET /v1/customers/{id}?as_of=…``, ``known_at``, ``version``) folds every event
of one customer. The long way builds, per event, the domain event (eventsourcing's mapper),
then an :class:`~infra.envelope.Envelope` from it: the event object, its ``data()`` and a
second dict for the envelope. :func:`opened_history` decodes each stored state once with the
store's transcoder (so tagged decimals and datetimes come back exactly as the mapper's do),
runs the event class's upcasters on that dict as the mapper does (they act on the state, not
on the event), and lays out the envelope itself. Personal data is then opened with
:meth:`infra.personal_data.PersonalData.open_envelopes` (the keys of a history fetched
together): a sealed token that does not decrypt under its key is still
:class:`~infra.personal_data.SealBroken`, and a shredded key still reads as redacted.

The envelopes equal ``Envelope.from_event(event, position)`` of :meth:`EventStore.history`'s
events field for field (``tests/unit/test_lean_history.py`` compares both, and the time-travel
answers they give, over a generated store with upcast, merged and erased customers; PostgreSQL
in the integration suite). A row the lean path cannot read (a topic that is not a current
customer event class, a missing meta field, a mapper with a cipher or compressor) takes the
mapper's path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from domain.event_base import META_FIELDS, LoggedEvent
from domain.events import EVENT_CLASSES, CustomerEvent
from infra.envelope import SCHEMA_VERSION, SEALED, Envelope, plain
from infra.store import EventStore

_SKIPPED = META_FIELDS | {SEALED}  # not in ``data`` (``class_version`` is popped before)
_CLASSES: dict[str, type[CustomerEvent]] = {get_topic(c): c for c in EVENT_CLASSES}


def opened_history(store: EventStore, customer_id: UUID) -> Iterator[Envelope]:
    """Every event of ``customer_id`` with its global position, oldest first, as opened
    envelopes (personal data in ``data``; redacted once shredded); none for an unknown id.
    One envelope is made at a time, as it is asked for: a fold that drops each one keeps no
    history's worth of objects alive, so none outlives the request into the garbage
    collector's older generations (whose full collections were the p99 of time travel).

    Raises :class:`~infra.personal_data.SealBroken` for personal data that does not decrypt
    under its key (altered or misplaced)."""
    store.forget_erased()  # keys shredded by another process are forgotten before opening
    rows = store.backend.positioned(customer_id, None)
    mapper, personal = store.personal_mapper, store.personal
    decode = (
        mapper.transcoder.decode if mapper.cipher is None and mapper.compressor is None else None
    )
    personal.keys.preload([customer_id.hex])  # the usual key owner; others as they come
    for position, stored in rows:
        envelope = _lean(stored, position, decode) if decode is not None else None
        if envelope is None:  # the mapper's path
            event = mapper.to_sealed_event(stored)
            assert isinstance(event, LoggedEvent)
            envelope = Envelope.from_event(event, position)
        yield personal.open_envelope(envelope)


def _lean(stored: StoredEvent, position: int, decode: Any) -> Envelope | None:
    """The sealed envelope of ``stored``, or None when only the mapper's path reads it."""
    cls = _CLASSES.get(stored.topic)
    customer_id = stored.originator_id
    if cls is None or not isinstance(customer_id, UUID):
        return None
    state: dict[str, Any] = decode(stored.state)
    upcast_from, current = state.pop("class_version", 1), getattr(cls, "class_version", 1)
    if upcast_from < current:  # as the mapper does: the ids set first, then each step
        state["originator_id"] = customer_id
        state["originator_version"] = stored.originator_version
        while upcast_from < current:
            getattr(cls, f"upcast_v{upcast_from}_v{upcast_from + 1}")(state)
            upcast_from += 1
    try:
        occurred_at, recorded_at = state["occurred_at"], state["timestamp"]
        actor, correlation_id = state["actor"], state["correlation_id"]
        causation_id = state["causation_id"]
    except KeyError:
        return None
    return Envelope(
        type=cls.TYPE,
        schema_version=SCHEMA_VERSION,
        customer_id=customer_id,
        version=stored.originator_version,
        position=position,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
        data=plain({k: v for k, v in state.items() if k not in _SKIPPED}),
        sealed=state.get(SEALED),
    )
