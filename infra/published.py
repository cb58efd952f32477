"""Stored customer events straight to the bytes the relay publishes (the lean read path).

The relay needs, per event, only the envelope's bytes and a few fields for its key, headers
and parking. Building the domain event (eventsourcing's mapper) and then an
:class:`~infra.envelope.Envelope` from it costs more than reading the row: the event object,
its ``data()``, a JSON round trip to make the data plain, a frozen dataclass of 15 fields, then
the envelope's own dict. :class:`LeanEncoder` goes from the stored bytes to the envelope bytes
directly: it decodes the state with the store's transcoder (so tagged decimals and datetimes
come back exactly as the mapper's do) and lays out the envelope document itself.

The output is byte-identical to ``Envelope.from_event(mapper.to_sealed_event(row), …)
.to_bytes()`` (``tests/unit/test_published.py`` compares both over every event type,
sealed personal data, merges, unmerges and erasures):

* ``data`` holds the stored fields in stored order minus the envelope's meta fields (as
  ``LoggedEvent.data`` does); decimals become their text and nested datetimes orjson's
  RFC 3339 (as :func:`infra.envelope.plain` makes them), ``occurred_at``/``recorded_at`` are
  ``isoformat()`` of the revived datetimes (as ``Envelope.to_dict`` writes them);
* personal data stays sealed: the token is moved from ``_sealed`` to ``sealed`` untouched.

Events stored under an older ``class_version`` need their upcasters, which act on the domain
event: those, and anything unexpected (a topic that is not a current customer event class, a
missing meta field, a mapper with a cipher or compressor), return None and take the mapper's
path (:meth:`consumers.store_feed.StoreFeed.read_published`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic

from domain.event_base import META_FIELDS
from domain.events import EVENT_CLASSES
from infra.envelope import SCHEMA_VERSION, SEALED, Envelope, _json_default, event_id_text

SCHEMA_VERSION_HEADER = str(SCHEMA_VERSION).encode()
_SKIPPED = META_FIELDS | {SEALED, "class_version"}  # not in ``data``


@dataclass(frozen=True, slots=True)
class Published:
    """One customer event as the relay sends it: key, envelope bytes, headers' sources, and
    where it sits (for parking)."""

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
        return [
            ("type", self.type.encode()),
            ("schema_version", SCHEMA_VERSION_HEADER),
            ("correlation_id", self.correlation_id.encode()),
        ]


class LeanEncoder:
    """Envelope bytes from stored customer events, without domain objects (module docstring)."""

    def __init__(self, mapper: Mapper[UUID]) -> None:
        self.decode = mapper.transcoder.decode
        self.enabled = mapper.cipher is None and mapper.compressor is None
        # topic -> (envelope type, current class version)
        self.kinds = {get_topic(c): (c.TYPE, getattr(c, "class_version", 1)) for c in EVENT_CLASSES}

    def encode(
        self, stored: StoredEvent, position: int, chain: tuple[str, str] | None
    ) -> Published | None:
        """The published form of ``stored`` recorded at ``position`` with hash link
        ``chain``, or None when only the mapper's path can make it (upcasting and the rest)."""
        kind = self.kinds.get(stored.topic)
        customer_id = stored.originator_id
        if kind is None or not self.enabled or not isinstance(customer_id, UUID):
            return None
        doc: dict[str, Any] = self.decode(stored.state)
        if doc.get("class_version", 1) < kind[1]:
            return None  # needs the upcasters
        try:
            occurred_at: datetime = doc["occurred_at"]
            recorded_at: datetime = doc["timestamp"]
            actor, correlation_id = doc["actor"], doc["correlation_id"]
            causation_id = doc["causation_id"]
        except KeyError:
            return None
        key = str(customer_id)
        version = stored.originator_version
        document = {
            "id": event_id_text(key, version),
            "type": kind[0],
            "schema_version": SCHEMA_VERSION,
            "customer_id": key,
            "version": version,
            "position": position,
            "occurred_at": occurred_at.isoformat(),
            "recorded_at": recorded_at.isoformat(),
            "actor": actor,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "data": {k: v for k, v in doc.items() if k not in _SKIPPED},
            "prev_hash": chain[0] if chain else None,
            "hash": chain[1] if chain else None,
            "sealed": doc.get(SEALED),
        }
        value = orjson.dumps(document, default=_json_default)
        return Published(key, version, position, kind[0], correlation_id, value)
