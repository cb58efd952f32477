"""The text policy: which text may be stored, checked once, in one canonical form.

Text (:func:`text_problem`; README, "The model") must be storable by every backend (PostgreSQL
refuses NUL; JSON encoders refuse unpaired surrogates) and must show what it holds. Never
allowed: C0/C1 control characters (free text keeps tab and line breaks), unpaired surrogates,
Unicode noncharacters, and the bidi embeddings/overrides U+202A-U+202E and deprecated format
characters U+206A-U+206F. Identifiers (codes, keys, ids, sources, reasons) are one line
without invisible characters: no format (Cf) or private-use characters and no space other
than U+0020. Accepted text is NFC-normalised. Every edge reaches storage through these
functions (and those of :mod:`domain.values`), so text is accepted or refused alike everywhere.
"""

from __future__ import annotations

import re
import unicodedata
from enum import Enum

from domain.errors import InvalidInput

MAX_TEXT_LENGTH = 4000
MAX_KEY_LENGTH = 200


class Text(Enum):
    """What a text field may hold (see the text policy above)."""

    IDENTIFIER = "identifier"  # codes, keys, ids: one line, nothing invisible
    LINE = "line"  # one line of human text: subjects, titles, emails, phones
    MULTILINE = "multiline"  # free text: tabs and line breaks (stored as \n) too


_NONCHARACTERS = r"\ufdd0-\ufdef" + "".join(
    rf"\U{plane | 0xFFFE:08x}\U{plane | 0xFFFF:08x}" for plane in range(0, 0x110000, 0x10000)
)
_NEVER = (
    r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u206a-\u206f" + _NONCHARACTERS
)
_BREAKS = "\t\n\r\u2028\u2029"
_REFUSED = {
    Text.MULTILINE: re.compile(f"[{_NEVER}]"),
    Text.LINE: re.compile(f"[{_NEVER}{_BREAKS}]"),
    Text.IDENTIFIER: re.compile(f"[{_NEVER}{_BREAKS}]"),  # and, beyond ASCII, _INVISIBLE
}
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp", "Zs"})


def _describe(char: str) -> str:
    point = ord(char)
    category = unicodedata.category(char)
    if char in _BREAKS:
        what = "a tab or line break; this field holds one line"
    elif category == "Cc":
        what = "a control character"
    elif category == "Cs":
        what = "an unpaired surrogate"
    elif 0xFDD0 <= point <= 0xFDEF or point & 0xFFFE == 0xFFFE:
        what = "a Unicode noncharacter"
    elif 0x202A <= point <= 0x202E:
        what = "a bidirectional embedding or override"
    elif 0x206A <= point <= 0x206F:
        what = "a deprecated format character"
    elif category == "Co":
        what = "a private-use character; identifiers hold visible characters only"
    elif category == "Cf":
        what = "an invisible format character; identifiers hold visible characters only"
    else:
        what = "a space other than U+0020; identifiers hold visible characters only"
    return f"U+{point:04X} ({what})"


def text_problem(value: str, kind: Text) -> str | None:
    """Why ``value`` may not be stored as ``kind`` text, or ``None`` when it may."""
    found = _REFUSED[kind].search(value)
    if found is None and kind is Text.IDENTIFIER and not value.isascii():
        found = next(
            (
                match
                for match in re.finditer(r"[^\x00-\x7f]", value)
                if unicodedata.category(match.group()) in _INVISIBLE and match.group() != " "
            ),
            None,
        )
    if found is None:
        return None
    return f"must not contain {_describe(found.group())} at character {found.start() + 1}"


def check_text(field: str, value: str, kind: Text) -> str:
    """``value`` unchanged if the text policy allows it as ``kind``, else :class:`InvalidInput`."""
    problem = text_problem(value, kind)
    if problem is not None:
        raise InvalidInput(field, problem)
    return value


def trim(value: str) -> str:
    """``value`` without surrounding spaces (U+0020 only). ``str.strip()`` also drops what the
    policy refuses (tabs and line breaks, U+001C-U+001F, U+0085, other spaces) and so would
    accept, silently changed, text that must be refused: parsers that ignore surrounding spaces
    trim with this."""
    return value.strip(" ")


def normalise_text(
    field: str, value: object, *, kind: Text, max_length: int = MAX_TEXT_LENGTH
) -> str | None:
    """Optional text of ``kind``: checked, NFC, trimmed, line breaks as LF; empty is ``None``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    check_text(field, value, kind)
    text = unicodedata.normalize("NFC", value).strip()
    if kind is Text.MULTILINE:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) > max_length:
        raise InvalidInput(field, f"must be at most {max_length} characters")
    return text or None


def normalise_identifier(field: str, value: object, *, max_length: int) -> str:
    """A required identifier (order id, source, reason code …): checked, NFC, trimmed."""
    text = normalise_text(field, value, kind=Text.IDENTIFIER, max_length=max_length)
    if text is None:
        raise InvalidInput(field, "is required")
    return text


def check_key(
    field: str, value: object, *, max_length: int = MAX_KEY_LENGTH, ascii_only: bool = False
) -> str:
    """An opaque key compared as sent (idempotency keys, correlation ids): never rewritten,
    so it must already be clean — non-empty, no surrounding spaces, identifier characters.
    ``ascii_only`` for HTTP headers, whose bytes beyond ASCII have no agreed character set."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if not value or len(value) > max_length:
        raise InvalidInput(field, f"must be 1 to {max_length} characters")
    check_text(field, value, Text.IDENTIFIER)
    if value != value.strip():
        raise InvalidInput(field, "must not start or end with a space")
    if ascii_only and not value.isascii():
        raise InvalidInput(
            field, "must be ASCII (header bytes beyond ASCII have no agreed charset)"
        )
    return value
