"""What the lean read paths share: the relay's envelope bytes (:mod:`infra.published`) and time
travel's envelopes (:mod:`infra.lean_history`) both read a stored customer event without the
mapper, and both must refuse the same rows (they then take the mapper's path).

A row is read lean when the mapper stores plain orjson (no cipher, no compressor, the store's
own transcoder), its topic is a current customer event class, its state is of that class's
current version (an older one needs the upcasters, which act on the domain event), and its
meta fields are all there, the two moments tagged as the transcoder tags datetimes and in
exactly ``isoformat()``'s text of a UTC datetime (so a reader may take the stored text for it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from eventsourcing.persistence import Mapper
from eventsourcing.utils import get_topic

from domain.event_base import META_FIELDS
from domain.events import EVENT_CLASSES
from infra.envelope import SEALED
from infra.transcoder import OrjsonTranscoder

_READ = frozenset({"timestamp", "occurred_at", "actor", "correlation_id", "causation_id"})
_DROPPED = tuple(sorted(META_FIELDS - _READ))
"""Meta fields :func:`parse` drops from ``data`` without reading them (the others it pops as it
reads them)."""
KINDS = {get_topic(c): (c.TYPE, getattr(c, "class_version", 1)) for c in EVENT_CLASSES}
"""Topic -> (envelope type, current class version) of every customer event class."""
_TAG = b'"_type_"'  # how a tagged value (decimal, datetime) starts in a stored state
_MOMENTS = 2  # tagged values every stored customer event has: occurred_at, timestamp


class StoredMeta(NamedTuple):
    """A stored customer event's envelope fields: ``fields`` is the envelope's ``data``, the
    parsed state itself with the meta fields and the sealed token taken out (no copy; stored
    order, tagged values as stored), the moments are both their stored texts
    (``occurred_at``, ``recorded_at``: exactly ``isoformat()`` of ``occurred``, ``recorded``,
    the datetimes an envelope holds), and the sealed token is apart."""

    type: str
    fields: dict[str, Any]
    sealed: str | None
    occurred_at: str
    recorded_at: str
    actor: str
    correlation_id: str
    causation_id: str | None
    occurred: datetime
    recorded: datetime
    tagged: bool
    """Whether ``fields`` may hold tagged values (decimals, nested datetimes, or text that
    looks so): if not, its values are plain already and need no reviving walk."""


def lean_readable(mapper: Mapper[UUID]) -> bool:
    """Whether ``mapper``'s stored states are plain orjson of the store's transcoder."""
    plain = mapper.cipher is None and mapper.compressor is None
    return plain and isinstance(mapper.transcoder, OrjsonTranscoder)


def parse(topic: str, state: bytes) -> StoredMeta | None:
    """The stored event's :class:`StoredMeta`, or None when only the mapper's path reads it
    (module docstring). The meta fields are popped from the parsed state as they are read:
    what is left is ``data``, with no copy made."""
    kind = KINDS.get(topic)
    if kind is None:
        return None
    doc: dict[str, Any] = orjson.loads(state)
    if doc.pop("class_version", 1) < kind[1]:
        return None
    try:
        occurred_at, occurred = _stored_moment(doc.pop("occurred_at"))
        recorded_at, recorded = _stored_moment(doc.pop("timestamp"))
        actor, correlation_id = doc.pop("actor"), doc.pop("correlation_id")
        causation_id = doc.pop("causation_id")
    except KeyError:
        return None
    for key in _DROPPED:
        doc.pop(key, None)
    fields = (
        kind[0],
        doc,
        doc.pop(SEALED, None),
        occurred_at,
        recorded_at,
        actor,
        correlation_id,
        causation_id,
        occurred,
        recorded,
        state.count(_TAG) > _MOMENTS,
    )
    return _meta(StoredMeta, fields)  # the tuple as is: a NamedTuple's __new__ is Python


_meta = tuple.__new__
_SEPARATORS = {True: "--T::.", False: "--T::+"}
"""``text[4:20:3]`` of ``isoformat()``'s text of a UTC datetime, with and without a fraction:
the separators at 4, 7, 10, 13, 16 and 19 (``YYYY-MM-DDTHH:MM:SS`` then ``.`` or ``+``)."""


def _stored_moment(value: Any) -> tuple[str, datetime]:
    """The text and datetime the transcoder stored as ``value`` (tagged, ``isoformat()``'s text
    of a UTC datetime); KeyError if ``value`` is not one, or its text is not exactly
    ``isoformat()``'s (the mapper's path then reads it, and normalises or refuses what it
    cannot), so the stored text may stand for the datetime's text.

    Exactly: a text ``datetime.fromisoformat`` reads as UTC is ``isoformat()``'s when it is
    ``YYYY-MM-DDTHH:MM:SS+00:00`` (no microseconds) or ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``
    (microseconds not zero): its length and separators say which of the forms the parser
    took (not a week date, a basic format, a comma, an offset with seconds or ``-00:00``)."""
    if type(value) is not dict or len(value) != 2 or value.get("_type_") != "datetime":
        raise KeyError("_type_")
    text = value["_data_"]
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise KeyError("_data_") from None
    fraction = moment.microsecond != 0
    if (
        moment.tzinfo is not UTC
        or len(text) != (32 if fraction else 25)
        or text[4:20:3] != _SEPARATORS[fraction]
        or text[-6:] != "+00:00"
    ):
        raise KeyError("_data_")
    return text, moment
