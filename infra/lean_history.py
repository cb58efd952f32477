"""One customer's history as opened envelopes, straight from the stored bytes (time travel's
lean read path).

Time travel (``GET /v1/customers/{id}?as_of=…``, ``known_at``, ``version``) folds every event
of one customer. The long way builds, per event, the domain event (eventsourcing's mapper, which
revives tagged decimals and datetimes), then an :class:`~infra.envelope.Envelope` from it: the
event object, its ``data()``, :func:`~infra.envelope.plain` turning the revived values back
into text, and the envelope. :func:`opened_history` parses each stored state once with orjson,
takes the meta fields out of it (what is left is ``data``: no copy), turns the tagged values of
``data`` straight into the text ``plain`` would make of them, parses the two moments into
datetimes and keeps their stored texts as the envelope's (exactly ``isoformat()``'s, checked:
the fold reads them, and formats none again), and lays out the envelope itself. Personal data is then
opened with :meth:`infra.personal_data.PersonalData.open_envelope`: a sealed token that does
not decrypt under its key is still :class:`~infra.personal_data.SealBroken`, and a shredded
key still reads as redacted. Envelopes are made one at a time, as the fold asks for them.

The envelopes equal ``Envelope.from_event(event, position)`` of :meth:`EventStore.history`'s
events field for field and byte for byte (``tests/unit/test_lean_history.py`` compares both,
and the time-travel answers they give, over a generated store with upcast, merged and erased
customers; PostgreSQL in the integration suite). A row the lean path does not read (an event
of an older class version, which needs its upcasters; a topic that is not a current customer
event class; a missing meta field; a mapper with a cipher, a compressor or another transcoder:
:mod:`infra.lean_rows`, shared with the relay's lean path) takes the mapper's path.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent

from domain.events import CustomerEvent
from infra.backends.base import HistoryRow
from infra.envelope import Envelope
from infra.lean_rows import lean_readable, parse
from infra.personal_data import needs_opening
from infra.store import EventStore
from infra.transcoder import reviver


class History:
    """One customer's stored rows, opened as envelopes one at a time as they are iterated
    (:func:`opened_history`)."""

    def __init__(self, store: EventStore, customer_id: UUID, rows: list[HistoryRow]) -> None:
        self.store, self.customer_id, self.rows = store, customer_id, rows

    @property
    def newest(self) -> int:
        """The store position of the customer's newest event (0: none)."""
        return self.rows[-1][0] if self.rows else 0

    def __iter__(self) -> Iterator[Envelope]:
        customer_id, mapper = self.customer_id, self.store.personal_mapper
        open_envelope = self.store.personal.open_envelope
        lean = lean_readable(mapper)
        for position, version, topic, state in self.rows:
            envelope = _lean(customer_id, position, version, topic, state) if lean else None
            if envelope is None:  # the mapper's path
                event = mapper.to_sealed_event(StoredEvent(customer_id, version, topic, state))
                if not isinstance(event, CustomerEvent):
                    raise TypeError(f"{topic} at position {position} is no customer event")
                envelope = Envelope.from_event(event, position)
            if needs_opening(envelope):  # one call less for the plain ones
                envelope = open_envelope(envelope)
            yield envelope


def opened_history(store: EventStore, customer_id: UUID) -> History:
    """Every event of ``customer_id`` with its global position, oldest first, as opened
    envelopes (personal data in ``data``; redacted once shredded); none for an unknown id.
    One envelope is made at a time, as it is asked for: a fold that drops each one keeps no
    history's worth of objects alive, so none outlives the request into the garbage
    collector's older generations (whose full collections were the p99 of time travel). The
    rows come with the log's head in one exchange (:meth:`StoreBackend.head_and_rows`), and
    the erasure watch looks up to that head here, before anything is opened.

    Iterating raises :class:`~infra.personal_data.SealBroken` for personal data that does not
    decrypt under its key (altered or misplaced)."""
    head, rows = store.backend.head_and_rows(customer_id)
    store.forget_erased(head)  # keys shredded by another process are forgotten before opening
    store.personal.keys.preload([customer_id.hex])  # the usual key owner; others as they come
    return History(store, customer_id, rows)


def _plain_datetime(text: str) -> Any:
    return orjson.loads(orjson.dumps(datetime.fromisoformat(text)))


# tagged values straight to their plain JSON form, as :func:`infra.envelope.plain` makes the
# revived ones: a decimal's canonical text (a text that is no decimal fails, as the mapper
# does), a datetime as orjson writes it
_as_plain = reviver({"decimal": lambda text: str(Decimal(text)), "datetime": _plain_datetime})


def _lean(
    customer_id: UUID, position: int, version: int, topic: str, state: bytes
) -> Envelope | None:
    """The sealed envelope of a stored event, or None when only the mapper's path reads it
    (:func:`infra.lean_rows.parse`: an event of an older class version needs its upcasters).
    Its ``data`` is the parsed state itself less the meta fields, and it keeps the stored
    texts of its moments (exactly their ``isoformat()``: :func:`infra.lean_rows.parse`), which
    the fold reads."""
    meta = parse(topic, state)
    if meta is None:
        return None
    (
        kind,
        fields,
        sealed,
        occurred_at,
        recorded_at,
        actor,
        correlation,
        causation,
        occurred,
        recorded,
        tagged,
    ) = meta  # unpacked at once: a field read by name is a property call
    return Envelope.stored(
        kind,
        customer_id,
        version,
        position,
        occurred,
        recorded,
        occurred_at,
        recorded_at,
        actor,
        correlation,
        causation,
        _as_plain(fields) if tagged else fields,
        sealed,
    )
