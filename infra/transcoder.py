"""orjson transcoder for eventsourcing: compact, fast, and type-preserving.

``Decimal`` and ``datetime`` are tagged (``{"_type_": ..., "_data_": ...}``) so that they come
back as the same types; everything else must be plain JSON (str, int, float, bool, None, list,
dict with str keys). Tuples come back as lists.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from eventsourcing.persistence import Transcoder

_DECODERS: dict[str, Callable[[str], Any]] = {
    "decimal": Decimal,
    "datetime": datetime.fromisoformat,
}
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"_type_": "decimal", "_data_": str(value)}
    if isinstance(value, datetime):
        return {"_type_": "datetime", "_data_": value.isoformat()}
    raise TypeError(f"cannot store {type(value).__name__} in an event: {value!r}")


def _revive(value: Any) -> Any:
    """Tagged values turned back into their types, in place (fresh ``orjson.loads`` output);
    scalars are never visited by a call of their own, which is what makes decoding cheap."""
    if type(value) is dict:
        tag = value.get("_type_")
        if tag is not None and len(value) == 2 and "_data_" in value:
            return _DECODERS[tag](value["_data_"])
        for key, item in value.items():
            if type(item) in _CONTAINERS:
                value[key] = _revive(item)
    elif type(value) is list:
        for index, item in enumerate(value):
            if type(item) in _CONTAINERS:
                value[index] = _revive(item)
    return value


_CONTAINERS = (dict, list)


class OrjsonTranscoder(Transcoder):
    """Transcoder selected with ``TRANSCODER_TOPIC=infra.transcoder:OrjsonTranscoder``."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=_default, option=_OPTIONS)

    def decode(self, data: bytes) -> Any:
        return _revive(orjson.loads(data))
