"""External ids: the ids a customer has in other systems, ``{system: id}``, in canonical form.

Pure, like :mod:`domain.values`, whose text policy they follow (README, "The model"):

* **system** — a slug naming the other system: an ASCII letter, then ASCII letters, digits,
  ``_``, ``-`` or ``.``; at most 64 characters. Systems are case-insensitive and stored in lower
  case (``Shop`` is ``shop``), like tags and emails.
* **id** — the id as the other system wrote it: a JSON string of identifier text (one line,
  nothing invisible), at most 200 characters, NFC, surrounding spaces trimmed. Case and leading
  zeros are kept (``00042`` is not ``42``, ``C-17`` is not ``c-17``); numbers are refused, since
  ``42`` may have lost the zeros of ``00042``.
* a customer holds at most :data:`MAX_EXTERNAL_IDS` systems, one id each.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from domain.errors import InvalidInput
from domain.text_policy import normalise_identifier

MAX_EXTERNAL_IDS = 20
MAX_SYSTEM_LENGTH = 64
MAX_EXTERNAL_ID_LENGTH = 200
SYSTEM_PATTERN = r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$"  # what a system slug may be (any case)
_SYSTEM = re.compile(SYSTEM_PATTERN)


def normalise_system(field: str, value: object) -> str:
    """A system slug in canonical (lower-case) form; anything else is :class:`InvalidInput`."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if not _SYSTEM.match(value):
        raise InvalidInput(
            field,
            f"system {value[:80]!r} must be an ASCII letter, then letters, digits, _ - or . "
            f"(at most {MAX_SYSTEM_LENGTH} characters)",
        )
    return value.lower()


def normalise_external_id(field: str, value: object) -> str:
    """One id of another system: identifier text, NFC, trimmed, case and zeros kept."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string (ids keep their leading zeros as text)")
    return normalise_identifier(field, value, max_length=MAX_EXTERNAL_ID_LENGTH)


def normalise_ref(system: object, external_id: object, field: str) -> tuple[str, str]:
    """A customer reference ``(system, id)`` in canonical form; errors name ``field.system`` or
    ``field.id``."""
    return (
        normalise_system(f"{field}.system", system),
        normalise_external_id(f"{field}.id", external_id),
    )


def normalise_external_ids(value: object, *, patch: bool) -> dict[str, str | None]:
    """``{system: id}`` in canonical form, systems sorted (one form whatever order they came in).

    As a ``patch`` (updates), ``None`` removes a system; in a full map (registration) a ``None``
    value is simply no id, as with attributes. Two keys naming the same system (``Shop`` and
    ``shop``) are refused rather than one of them dropped.
    """
    if not isinstance(value, Mapping):
        raise InvalidInput("external_ids", "must be an object of {system: id}")
    if len(value) > MAX_EXTERNAL_IDS:
        raise InvalidInput("external_ids", f"at most {MAX_EXTERNAL_IDS} systems")
    cleaned: dict[str, str | None] = {}
    for key, item in value.items():
        system = normalise_system("external_ids", key)
        if system in cleaned:
            raise InvalidInput("external_ids", f"system {system!r} is given twice")
        if item is None:
            if patch:
                cleaned[system] = None
            continue
        cleaned[system] = normalise_external_id(f"external_ids.{system}", item)
    return dict(sorted(cleaned.items()))


def ref_text(system: str, external_id: str) -> str:
    """How a reference is named in messages: ``shop:00042``."""
    return f"{system}:{external_id}"
