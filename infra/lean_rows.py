"""What the lean read paths share: the relay's envelope bytes (:mod:`infra.published`) and time
travel's envelopes (:mod:`infra.lean_history`) both read a stored customer event without the
mapper, and both must refuse the same rows (they then take the mapper's path).

A row is read lean when the mapper stores plain orjson (no cipher, no compressor, the store's
own transcoder), its topic is a current customer event class, its state is of that class's
current version (an older one needs the upcasters, which act on the domain event), and its
meta fields are all there, the two moments tagged as the transcoder tags datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from eventsourcing.persistence import Mapper
from eventsourcing.utils import get_topic

from domain.event_base import META_FIELDS
from domain.events import EVENT_CLASSES
from infra.envelope import SEALED
from infra.transcoder import OrjsonTranscoder

SKIPPED = (*sorted(META_FIELDS), SEALED, "class_version")
"""Fields of a stored state that are not the envelope's ``data``."""
KINDS = {get_topic(c): (c.TYPE, getattr(c, "class_version", 1)) for c in EVENT_CLASSES}
"""Topic -> (envelope type, current class version) of every customer event class."""
_TAG = b'"_type_"'  # how a tagged value (decimal, datetime) starts in a stored state
_MOMENTS = 2  # tagged values every stored customer event has: occurred_at, timestamp


class StoredMeta(NamedTuple):
    """A stored customer event's parsed state and envelope fields; the moments both as the
    stored ``isoformat()`` texts (``occurred_at``, ``recorded_at``: what envelope bytes hold)
    and as the datetimes they read as (``occurred``, ``recorded``: what an envelope holds)."""

    type: str
    state: dict[str, Any]
    occurred_at: str
    recorded_at: str
    actor: str
    correlation_id: str
    causation_id: str | None
    occurred: datetime
    recorded: datetime
    tagged: bool
    """Whether ``data`` may hold tagged values (decimals, nested datetimes, or text that looks
    so): if not, its values are plain already and need no reviving walk."""

    def data(self) -> dict[str, Any]:
        """The envelope's ``data``: the stored fields in stored order, meta fields left out
        (tagged values as stored). A copy with ten keys popped: half a comprehension's time."""
        data = self.state.copy()
        for key in SKIPPED:
            data.pop(key, None)
        return data


def lean_readable(mapper: Mapper[UUID]) -> bool:
    """Whether ``mapper``'s stored states are plain orjson of the store's transcoder."""
    plain = mapper.cipher is None and mapper.compressor is None
    return plain and isinstance(mapper.transcoder, OrjsonTranscoder)


def parse(topic: str, state: bytes) -> StoredMeta | None:
    """The stored event's :class:`StoredMeta`, or None when only the mapper's path reads it
    (module docstring)."""
    kind = KINDS.get(topic)
    if kind is None:
        return None
    doc: dict[str, Any] = orjson.loads(state)
    if doc.get("class_version", 1) < kind[1]:
        return None
    try:
        occurred, recorded = doc["occurred_at"], doc["timestamp"]
        occurred_at, recorded_at = _stored_moment(occurred), _stored_moment(recorded)
        return StoredMeta(
            kind[0],
            doc,
            occurred["_data_"],
            recorded["_data_"],
            doc["actor"],
            doc["correlation_id"],
            doc["causation_id"],
            occurred_at,
            recorded_at,
            state.count(_TAG) > _MOMENTS,
        )
    except KeyError:
        return None


def _stored_moment(value: Any) -> datetime:
    """The datetime the transcoder stored as ``value`` (tagged, in ``isoformat()``'s text);
    KeyError if ``value`` is not one, or its text is not a datetime in ``isoformat()``'s form
    (the mapper's path then reads it, and refuses what it cannot)."""
    if type(value) is not dict or len(value) != 2 or value.get("_type_") != "datetime":
        raise KeyError("_type_")
    text = value["_data_"]
    if type(text) is not str or len(text) < 19 or text[10] != "T" or text[-1] == "Z":
        raise KeyError("_data_")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise KeyError("_data_") from None
