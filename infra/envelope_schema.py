"""Builds ``schemas/event-envelope.schema.json`` from the event classes, so it cannot drift.

Regenerate after changing an event: ``python -m infra.envelope_schema``.
"""

from __future__ import annotations

import json
import types
import typing
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.event_base import data_fields
from domain.events import EVENT_CLASSES
from infra.envelope import SCHEMA_PATH

_ENVELOPE_FIELDS: dict[str, Any] = {
    "id": {"type": "string", "format": "uuid", "description": "uuid5 of (customer_id, version)"},
    "type": {"enum": [cls.TYPE for cls in EVENT_CLASSES]},
    "schema_version": {"const": 1},
    "customer_id": {"type": "string", "format": "uuid"},
    "version": {"type": "integer", "minimum": 1, "description": "customer version after it"},
    "position": {"type": "integer", "minimum": 1, "description": "global store position"},
    "occurred_at": {"type": "string", "format": "date-time", "description": "business time"},
    "recorded_at": {"type": "string", "format": "date-time", "description": "store time"},
    "actor": {"type": "string"},
    "correlation_id": {"type": "string"},
    "causation_id": {"type": ["string", "null"]},
    "data": {"type": "object"},
    "prev_hash": {"type": ["string", "null"], "description": "hash of the previous event"},
    "hash": {"type": ["string", "null"]},
    "sealed": {
        "type": ["string", "null"],
        "description": "the event's personal fields, AES-256-GCM under the customer's own key, "
        "or under data_owner's for what a merge moved (absent from data while sealed; see "
        "README, Privacy)",
    },
}


def _json_type(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        schema = _json_type(inner)
        return {**schema, "type": [schema["type"], "null"]}
    if origin is list:
        return {"type": "array", "items": _json_type(typing.get_args(hint)[0])}
    if origin is dict:
        return {"type": "object"}
    simple: dict[Any, dict[str, Any]] = {
        str: {"type": "string"},
        int: {"type": "integer"},
        bool: {"type": "boolean"},
        Decimal: {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
        datetime: {"type": "string", "format": "date-time"},
    }
    return simple[hint]


def build_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the envelope, with one ``data`` shape per type."""
    definitions = {}
    conditions = []
    for cls in EVENT_CLASSES:
        hints = typing.get_type_hints(cls)
        name = cls.TYPE.split(".", 1)[1]
        properties = {field: _json_type(hints[field]) for field in data_fields(cls)}
        for field in cls.PERSONAL:  # absent while sealed, null (or {}) once erased
            kind = properties[field]["type"]
            nullable = kind if isinstance(kind, list) else [kind, "null"]
            properties[field] = {**properties[field], "type": nullable, "x-personal": True}
        definitions[name] = {
            "type": "object",
            "required": [f for f in properties if f not in cls.PERSONAL],
            "properties": properties,
            "additionalProperties": False,
        }
        conditions.append(
            {
                "if": {"properties": {"type": {"const": cls.TYPE}}},
                "then": {"properties": {"data": {"$ref": f"#/$defs/{name}"}}},
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:clientele:schema:event-envelope:1",
        "title": "clientele customer event envelope (topic customer.events)",
        "type": "object",
        "required": list(_ENVELOPE_FIELDS),
        "additionalProperties": False,
        "properties": _ENVELOPE_FIELDS,
        "allOf": conditions,
        "$defs": definitions,
    }


def render() -> str:
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render())
