"""What duplicate detection compares: one customer's fields in a canonical form.

- **name**: transliterated to ASCII (``anyascii``: Zoë → zoe, Łukasz → lukasz, 王小明 →
  wangxiaoming), lower-cased, punctuation dropped, titles (mr, dr, …) removed; ``first`` and
  ``last`` are the first and last token; ``first_names`` adds the canonical names of a nickname
  from the ``nicknames`` data set (bob → robert), so Bob Smith and Robert Smith compare as one.
- **email**: ``email_key`` folds provider aliases: ``+tags`` are dropped on providers that
  deliver them to the base address, dots in the local part on those that ignore them (Gmail),
  and googlemail.com is gmail.com. The address as stored stays in ``email``.
- **phone**: E.164 as stored by the write side (every accepted phone is E.164 already).
- **address**: ``attributes.address`` and ``attributes.city`` (or ``postal_code``),
  transliterated, lower-cased, punctuation and common street words (street → st) folded.
- **external ids**: the ``(system, id)`` pairs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from anyascii import anyascii
from nicknames import NickNamer

_TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "jr", "sr"})
_NON_WORD = re.compile(r"[^a-z0-9 ]+")
_SPACES = re.compile(r"\s+")
# Providers that deliver user+tag@ to user@ (subaddressing), and those that also ignore dots.
PLUS_PROVIDERS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "icloud.com",
        "me.com",
        "fastmail.com",
        "protonmail.com",
        "proton.me",
        "pm.me",
    }
)
DOTLESS_PROVIDERS = frozenset({"gmail.com", "googlemail.com"})
_DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}
_STREET_WORDS = {
    "street": "st",
    "str": "st",
    "road": "rd",
    "avenue": "ave",
    "av": "ave",
    "boulevard": "blvd",
    "lane": "ln",
    "drive": "dr",
    "place": "pl",
    "square": "sq",
}


@dataclass(frozen=True, slots=True)
class MatchRecord:
    """One live customer as duplicate detection sees it (see the module docstring)."""

    customer_id: str
    name: str  # normalised tokens joined by one space
    first: str
    last: str
    first_names: frozenset[str]  # first plus its canonical names
    email: str | None
    email_key: str | None
    phone: str | None
    address: str | None
    city: str | None
    external_ids: frozenset[tuple[str, str]]

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(self.name.split())


@cache
def _nicknamer() -> NickNamer:
    return NickNamer()


@cache
def canonical_first_names(first: str) -> frozenset[str]:
    """``first`` and the names it is a nickname of (bob → {bob, robert, bobby, bert})."""
    if len(first) < 2:
        return frozenset({first})
    return frozenset({first, *_nicknamer().canonicals_of(first)})


def fold_text(value: str) -> str:
    """ASCII, lower case, punctuation to spaces, one space between words."""
    text = _NON_WORD.sub(" ", anyascii(value).lower())
    return _SPACES.sub(" ", text).strip()


def name_tokens(name: str) -> list[str]:
    return [t for t in fold_text(name).split() if t not in _TITLES] or fold_text(name).split()


def email_key(email: str) -> str:
    """The mailbox an address delivers to (see the module docstring); ``email`` is stored
    lower-case by the write side."""
    local, _, domain = email.lower().rpartition("@")
    domain = _DOMAIN_ALIASES.get(domain, domain)
    if domain in PLUS_PROVIDERS:
        local = local.split("+", 1)[0]
    if domain in DOTLESS_PROVIDERS:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def _address(value: object) -> str | None:
    if not isinstance(value, str) or not (text := fold_text(value)):
        return None
    return " ".join(_STREET_WORDS.get(word, word) for word in text.split())


def match_record(customer_id: str, profile: Mapping[str, Any]) -> MatchRecord:
    """The record of a profile (``name``, ``email``, ``phone``, ``attributes``, ``external_ids``
    as in the profiles read model or a registration command)."""
    tokens = name_tokens(str(profile.get("name") or ""))
    first = tokens[0] if tokens else ""
    last = tokens[-1] if len(tokens) > 1 else ""
    email = profile.get("email") or None
    attributes = profile.get("attributes") or {}
    city = _address(attributes.get("city")) or _address(attributes.get("postal_code"))
    external = profile.get("external_ids") or {}
    return MatchRecord(
        customer_id=customer_id,
        name=" ".join(tokens),
        first=first,
        last=last,
        first_names=canonical_first_names(first),
        email=email,
        email_key=email_key(email) if email else None,
        phone=profile.get("phone") or None,
        address=_address(attributes.get("address")),
        city=city,
        external_ids=frozenset((str(k), str(v)) for k, v in external.items()),
    )
