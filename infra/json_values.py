"""Record values that must be one UTF-8 JSON object (Kafka command and event messages), and a
specific reason when one is not: what a dead letter says, so whoever sent it can fix it.

Reasons name the kind first — ``no value``, ``empty``, ``UTF-8 byte order
mark``, ``UTF-16``/``UTF-32``, ``not UTF-8``, ``truncated``, ``not JSON``, ``not a JSON
object`` — then where (byte offset, line and column) when that helps.
"""

from __future__ import annotations

import codecs
from typing import Any

import orjson

BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
JSON_KINDS = {list: "an array", str: "a string", bool: "a boolean", int: "a number"}


class NotJsonObject(ValueError):
    """A value that is not one UTF-8 JSON object; ``str()`` is the specific reason."""


def wide_encoding(raw: bytes) -> str | None:
    """``UTF-16 …``/``UTF-32 …`` (and how it shows) when ``raw`` starts like text in one: a
    byte order mark, or NUL bytes around a first ASCII character (RFC 4627 section 3); else
    ``None``. Import files are told apart the same way."""
    for bom, name in BOMS:
        if raw.startswith(bom):
            return f"{name} (byte order mark {bom.hex(' ')})"
    head = raw[:4]
    if len(head) == 4 and head.count(0) == 3 and _ascii(head[0] or head[3]):
        return "UTF-32 (NUL bytes between characters)"
    if len(head) >= 2 and (head[0] == 0) != (head[1] == 0) and _ascii(head[0] or head[1]):
        return "UTF-16 (NUL bytes between characters)"
    return None


def _ascii(byte: int) -> bool:
    """A character JSON text may start with (whitespace or printable ASCII)."""
    return byte in (0x09, 0x0A, 0x0D) or 0x20 <= byte <= 0x7E


def _undecodable(raw: bytes, error: orjson.JSONDecodeError) -> str:
    if not raw.strip():
        return "empty: no JSON text"
    if raw.startswith(codecs.BOM_UTF8):
        return "UTF-8 byte order mark before the JSON text: send UTF-8 without one"
    wide = wide_encoding(raw)
    if wide is not None:
        return f"{wide}: send UTF-8"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        byte = raw[bad.start]
        return f"not UTF-8: byte 0x{byte:02x} at offset {bad.start} ({bad.reason})"
    if error.msg == "unexpected end of data":
        return f"truncated: the JSON text ends inside a value after {len(raw)} bytes"
    return f"not JSON: {error.msg} at line {error.lineno} column {error.colno}"


def json_object(raw: bytes | None, what: str) -> dict[str, Any]:
    """``raw`` parsed as one JSON object (``what`` names it in reasons: "a command").

    Raises :class:`NotJsonObject` with the specific reason: no value (a tombstone), empty, a byte order mark, UTF-16/UTF-32, invalid UTF-8 (offset), truncated,
    other JSON syntax (line, column; unpaired surrogate escapes included), or valid JSON of
    another type."""
    if raw is None:
        raise NotJsonObject("no value (a tombstone)")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise NotJsonObject(_undecodable(raw, error)) from None
    if not isinstance(doc, dict):
        kind = "null" if doc is None else JSON_KINDS.get(type(doc), "a number")
        raise NotJsonObject(f"not a JSON object: {what} must be an object, not {kind}")
    return doc
