"""Stored customer events straight to the bytes the relay publishes (the lean read path).

The relay needs, per event, only the envelope's bytes and a few fields for its key, headers
and parking. Building the domain event (eventsourcing's mapper) and then an
:class:`~infra.envelope.Envelope` from it costs more than reading the row: the event object,
its ``data()``, a JSON round trip to make the data plain, a frozen dataclass of 15 fields, then
the envelope's own dict. :class:`LeanEncoder` goes from a stored row
(:data:`~infra.backends.base.LogRow`: plain values, no object per event) to the envelope bytes
directly and lays out the envelope document itself. It parses the state with orjson and
takes the stored texts of ``occurred_at`` and ``timestamp`` as they are: the transcoder stored
them as ``isoformat()``, which is what the envelope writes of the revived datetimes again.
Only when the state holds other tagged values (decimals, nested datetimes) are those revived,
by the store's transcoder's own reviver, so they come out exactly as the mapper's do.

The output is byte-identical to ``Envelope.from_event(mapper.to_sealed_event(row), …)
.to_bytes()`` (``tests/unit/test_published.py`` compares both over every event type,
sealed personal data, merges, unmerges and erasures):

* ``data`` holds the stored fields in stored order minus the envelope's meta fields (as
  ``LoggedEvent.data`` does); decimals become their text and nested datetimes orjson's
  RFC 3339 (as :func:`infra.envelope.plain` makes them), ``occurred_at``/``recorded_at`` are
  ``isoformat()`` of the revived datetimes (as ``Envelope.to_dict`` writes them: the stored
  text, since ``datetime.fromisoformat`` is the inverse of ``isoformat``);
* personal data stays sealed: the token is moved from ``_sealed`` to ``sealed`` untouched.

Events stored under an older ``class_version`` need their upcasters, which act on the domain
event: those, and anything unexpected (:mod:`infra.lean_rows`, shared with time travel's
lean path), return None and take the mapper's path
(:meth:`consumers.store_feed.StoreFeed.read_published`).
"""

from __future__ import annotations

from typing import NamedTuple
from uuid import UUID

import orjson
from eventsourcing.persistence import Mapper

from infra.backends.base import LogRow
from infra.envelope import SCHEMA_VERSION, Envelope, event_id_text, json_default
from infra.lean_rows import lean_readable, parse
from infra.transcoder import revive_tagged

SCHEMA_VERSION_HEADER = ("schema_version", str(SCHEMA_VERSION).encode())
_TYPE_HEADERS: dict[str, tuple[str, bytes]] = {}  # envelope type -> its header, made once


class Published(NamedTuple):
    """One customer event as the relay sends it: key, envelope bytes, headers' sources, and
    where it sits (for parking). A named tuple: the relay makes one per event."""

    customer_key: str  # the customer id as text: the Kafka key
    version: int
    position: int
    type: str
    correlation_id: str
    value: bytes  # the envelope, as ``Envelope.to_bytes`` encodes it

    @classmethod
    def of(cls, envelope: Envelope) -> Published:
        """The published form of an envelope built the long way (the fallback)."""
        return cls(
            envelope.customer_key,
            envelope.version,
            envelope.position,
            envelope.type,
            envelope.correlation_id,
            envelope.to_bytes(),
        )

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """The contract's headers, as :meth:`Envelope.kafka_headers` gives them."""
        kind = _TYPE_HEADERS.get(self.type)
        if kind is None:
            kind = _TYPE_HEADERS[self.type] = ("type", self.type.encode())
        return [kind, SCHEMA_VERSION_HEADER, ("correlation_id", self.correlation_id.encode())]


class LeanEncoder:
    """Envelope bytes from stored customer events, without domain objects (module docstring)."""

    def __init__(self, mapper: Mapper[UUID]) -> None:
        self.enabled = lean_readable(mapper)

    def encode(self, row: LogRow) -> Published | None:
        """The published form of the stored event ``row``, or None when only the mapper's
        path can make it (upcasting and the rest: :mod:`infra.lean_rows`)."""
        position, key, version, topic, state, prev_hash, hash_ = row
        meta = parse(topic, state) if self.enabled else None
        if meta is None:
            return None
        data = meta.fields
        if meta.tagged:  # decimals or nested datetimes (or text that looks so)
            data = revive_tagged(data)
        document = {
            "id": event_id_text(key, version),
            "type": meta.type,
            "schema_version": SCHEMA_VERSION,
            "customer_id": key,
            "version": version,
            "position": position,
            "occurred_at": meta.occurred_at,
            "recorded_at": meta.recorded_at,
            "actor": meta.actor,
            "correlation_id": meta.correlation_id,
            "causation_id": meta.causation_id,
            "data": data,
            "prev_hash": prev_hash,
            "hash": hash_,
            "sealed": meta.sealed,
        }
        value = orjson.dumps(document, default=json_default)
        return Published(key, version, position, meta.type, meta.correlation_id, value)
