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
event: those, and anything unexpected (a topic that is not a current customer event class, a
missing meta field, a mapper with a cipher or compressor), return None and take the mapper's
path (:meth:`consumers.store_feed.StoreFeed.read_published`).
"""

from __future__ import annotations

from typing import Any, NamedTuple
from uuid import UUID

import orjson
from eventsourcing.persistence import Mapper
from eventsourcing.utils import get_topic

from domain.event_base import META_FIELDS
from domain.events import EVENT_CLASSES
from infra.backends.base import LogRow
from infra.envelope import SCHEMA_VERSION, SEALED, Envelope, _json_default, event_id_text
from infra.transcoder import _revive

SCHEMA_VERSION_HEADER = ("schema_version", str(SCHEMA_VERSION).encode())
_SKIPPED = META_FIELDS | {SEALED, "class_version"}  # not in ``data``
_TAG = b'"_type_"'  # how a tagged value (decimal, datetime) starts in a stored state
_MOMENTS = 2  # tagged values every stored customer event has: occurred_at, timestamp
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


def _stored_moment(value: Any) -> str:
    """The text of a datetime as the transcoder stored it (``isoformat()``); KeyError if
    ``value`` is not one."""
    if type(value) is not dict or value.get("_type_") != "datetime" or len(value) != 2:
        raise KeyError("_type_")
    text: str = value["_data_"]
    return text


class LeanEncoder:
    """Envelope bytes from stored customer events, without domain objects (module docstring)."""

    def __init__(self, mapper: Mapper[UUID]) -> None:
        self.enabled = mapper.cipher is None and mapper.compressor is None
        # topic -> (envelope type, current class version)
        self.kinds = {get_topic(c): (c.TYPE, getattr(c, "class_version", 1)) for c in EVENT_CLASSES}

    def encode(self, row: LogRow) -> Published | None:
        """The published form of the stored event ``row``, or None when only the mapper's
        path can make it (upcasting and the rest)."""
        position, key, version, topic, state, prev_hash, hash_ = row
        kind = self.kinds.get(topic)
        if kind is None or not self.enabled:
            return None
        doc: dict[str, Any] = orjson.loads(state)
        if doc.get("class_version", 1) < kind[1]:
            return None  # needs the upcasters
        try:
            occurred_at = _stored_moment(doc["occurred_at"])
            recorded_at = _stored_moment(doc["timestamp"])
            actor, correlation_id = doc["actor"], doc["correlation_id"]
            causation_id = doc["causation_id"]
        except KeyError:
            return None
        data = {k: v for k, v in doc.items() if k not in _SKIPPED}
        if state.count(_TAG) > _MOMENTS:  # decimals or nested datetimes (or text that looks so)
            data = _revive(data)
        document = {
            "id": event_id_text(key, version),
            "type": kind[0],
            "schema_version": SCHEMA_VERSION,
            "customer_id": key,
            "version": version,
            "position": position,
            "occurred_at": occurred_at,
            "recorded_at": recorded_at,
            "actor": actor,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "data": data,
            "prev_hash": prev_hash,
            "hash": hash_,
            "sealed": doc.get(SEALED),
        }
        value = orjson.dumps(document, default=_json_default)
        return Published(key, version, position, kind[0], correlation_id, value)
