"""Personal data, declared once: the marker an event field carries, and what follows from it.

A field of a customer event that holds personal data is annotated with its :class:`Personal`
shape, e.g. ``email: Annotated[str | None, Personal.TEXT]``. Everything else is derived from
that declaration (:func:`personal_fields`): which fields are sealed with the customer's key
(``CustomerEvent.PERSONAL``, :mod:`infra.personal_data`), what they read as once the key is
shredded (:func:`redacted`), what the customer snapshot seals (``Customer.PERSONAL``), what the
profile fold forgets on erasure, which audit values are blanked for readers without the ``pii``
permission, and how the API masks a profile for them.
"""

from __future__ import annotations

import dataclasses
import typing
from enum import Enum
from functools import cache
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from domain.customer_event import CustomerEvent


class Personal(Enum):
    """The shape of a personal field, which decides how it is hidden.

    * ``TEXT``: a value about the person (a name, an email, a note): reads as null once erased;
      masked keeping a hint of it (first character, email domain, phone prefix).
    * ``IDS``: ``{system: id}``, the systems in clear and the ids personal: ``{}`` once erased;
      each id masked like ``TEXT``.
    * ``MAP``: ``{key: value}``, the keys in clear and the values personal: ``{}`` once erased;
      every value masked whole (``"***"``).
    """

    TEXT = "text"
    IDS = "ids"
    MAP = "map"


def redacted(shape: Personal) -> Any:
    """What a personal field of ``shape`` reads as once its owner's key is shredded (erased)."""
    return None if shape is Personal.TEXT else {}


@cache
def personal_fields(cls: type) -> dict[str, Personal]:
    """``{field: shape}`` of the dataclass ``cls``'s fields annotated with a :class:`Personal`
    marker, in declaration order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    shapes: dict[str, Personal] = {}
    for field in dataclasses.fields(cls):
        for marker in getattr(hints[field.name], "__metadata__", ()):
            if isinstance(marker, Personal):
                shapes[field.name] = marker
    return shapes


def key_owner(event: CustomerEvent) -> UUID:
    """Whose data key seals the event's personal fields: its ``KEY_OWNER`` field, if it names
    someone (data a merge moved from another person), else the customer the event belongs to."""
    owner = getattr(event, event.KEY_OWNER, None) if event.KEY_OWNER else None
    return UUID(owner) if owner else event.originator_id


def blank(shapes: dict[str, Personal], document: Any) -> Any:
    """``document`` with the values of personal fields (named by ``shapes``, alone or as the
    head of a dotted path such as ``attributes.city``) replaced by null, recursively; keys and
    structure stay (a map keeps its keys)."""
    if isinstance(document, list):
        return [blank(shapes, item) for item in document]
    if not isinstance(document, dict):
        return document
    shown: dict[str, Any] = {}
    for key, value in document.items():
        shape = shapes.get(key.split(".")[0])
        if shape is None:
            shown[key] = blank(shapes, value)
        elif shape is not Personal.TEXT and key in shapes and isinstance(value, dict):
            shown[key] = dict.fromkeys(value)
        else:
            shown[key] = None
    return shown


def _hint(value: str) -> str:
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if value.startswith("+"):
        return value[:3] + "*" * max(len(value) - 5, 3) + value[-2:]
    return value[:1] + "***"


def masked(shapes: dict[str, Personal], document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with its personal fields (``shapes``) masked as their shape says."""
    shown = dict(document)
    for field, shape in shapes.items():
        value = shown.get(field)
        if shape is Personal.TEXT and isinstance(value, str):
            shown[field] = _hint(value)
        elif shape is Personal.IDS and value:
            shown[field] = {k: _hint(v) for k, v in value.items()}
        elif shape is Personal.MAP and value:
            shown[field] = dict.fromkeys(value, "***")
    return shown
