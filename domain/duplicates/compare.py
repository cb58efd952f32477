"""Comparison levels: how alike two records are, field by field.

Each comparison returns one level name from the field's tuple in :data:`LEVELS` (the most
alike first) or ``"missing"`` when either side lacks the field (no evidence either way).
String similarity is Jaro-Winkler from ``rapidfuzz``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from anyascii import anyascii
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler, Levenshtein

from domain.duplicates.records import MatchRecord, canonical_first_names

MISSING = "missing"
LEVELS: dict[str, tuple[str, ...]] = {
    "name": (
        "exact",
        "reordered",
        "nickname",
        "typo",
        "initial",
        "same_last_other_first",
        "other",
    ),
    "email": ("exact", "alias", "typo", "different"),
    "phone": ("exact", "typo", "different"),
    "address": ("exact", "similar", "same_city", "different"),
    "external_id": ("same_id", "conflict"),
}
_CLOSE = 0.92


def _close(a: str, b: str) -> bool:
    """A typo of the same word: Jaro-Winkler at or above 0.92, or one letter dropped, added,
    changed or two swapped in a word of four letters or more (Rictoria for Victoria)."""
    if not a or not b:
        return False
    if min(len(a), len(b)) >= 4 and DamerauLevenshtein.distance(a, b) <= 1:
        return True
    return JaroWinkler.normalized_similarity(a, b) >= _CLOSE


def _name_level(a: MatchRecord, first: str, last: str, first_names: frozenset[str]) -> int:
    """The index in ``LEVELS["name"]`` of ``a`` against the name (first, last)."""
    levels = LEVELS["name"]
    last_close = last == a.last or _close(last, a.last)
    if last_close and first != a.first and (first in a.first_names or a.first in first_names):
        return levels.index("nickname")  # one is a nickname of the other in the data set
    if last_close and (first == a.first or _close(first, a.first)):
        return levels.index("typo")
    if last == a.last and first[:1] == a.first[:1] and min(len(first), len(a.first)) == 1:
        return levels.index("initial")
    if last and last == a.last:
        return levels.index("same_last_other_first")
    return levels.index("other")


def compare_name(a: MatchRecord, b: MatchRecord) -> str:
    if not a.name or not b.name:
        return MISSING
    if a.name == b.name:
        return "exact"
    if sorted(a.tokens) == sorted(b.tokens):
        return "reordered"
    level = min(
        _name_level(a, b.first, b.last, b.first_names),
        _name_level(a, b.last, b.first, canonical_first_names(b.last)),
    )
    if level > LEVELS["name"].index("typo") and (
        JaroWinkler.normalized_similarity(a.name, b.name) >= 0.95
    ):
        return "typo"
    return LEVELS["name"][level]


def compare_email(a: MatchRecord, b: MatchRecord) -> str:
    if a.email is None or b.email is None or a.email_key is None or b.email_key is None:
        return MISSING
    if a.email == b.email:
        return "exact"
    if a.email_key == b.email_key:
        return "alias"
    local_a, _, domain_a = a.email_key.partition("@")
    local_b, _, domain_b = b.email_key.partition("@")
    if local_a == local_b and _close(domain_a, domain_b):
        return "typo"
    if domain_a == domain_b and _one_letter_apart(local_a, local_b):
        return "typo"
    return "different"


def _one_letter_apart(a: str, b: str) -> bool:
    """One letter typed wrong and the same digits: jhon.smith for john.smith, but not
    johnsmith (another person's address where dots count) nor jsmith12 for jsmith1."""
    letters_a, letters_b = (re.sub(r"[^a-z]", "", anyascii(x)) for x in (a, b))
    return (
        re.sub(r"[^0-9]", "", a) == re.sub(r"[^0-9]", "", b)
        and min(len(letters_a), len(letters_b)) >= 5
        and DamerauLevenshtein.distance(letters_a, letters_b) == 1
    )


def compare_phone(a: MatchRecord, b: MatchRecord) -> str:
    if a.phone is None or b.phone is None:
        return MISSING
    if a.phone == b.phone:
        return "exact"
    if len(a.phone) == len(b.phone) and Levenshtein.distance(a.phone, b.phone) <= 1:
        return "typo"
    return "different"


def compare_address(a: MatchRecord, b: MatchRecord) -> str:
    if a.address is None or b.address is None:
        if a.city is not None and a.city == b.city:
            return "same_city"
        return MISSING
    same_city = a.city is None or b.city is None or a.city == b.city
    if a.address == b.address and same_city:
        return "exact"
    if same_city and _close(a.address, b.address):
        return "similar"
    if a.city is not None and a.city == b.city:
        return "same_city"
    return "different"


def compare_external_id(a: MatchRecord, b: MatchRecord) -> str:
    systems_a = {system for system, _ in a.external_ids}
    shared = systems_a & {system for system, _ in b.external_ids}
    if not shared:
        return MISSING
    if a.external_ids & b.external_ids:
        return "same_id"
    return "conflict"


COMPARISONS: dict[str, Callable[[MatchRecord, MatchRecord], str]] = {
    "name": compare_name,
    "email": compare_email,
    "phone": compare_phone,
    "address": compare_address,
    "external_id": compare_external_id,
}


def compare(a: MatchRecord, b: MatchRecord) -> dict[str, str]:
    """The level of every field: ``{field: level}`` (see :data:`LEVELS`).

    An email one letter away from the other is a typo only when the names agree: addresses
    spell their owners' names, so john.smith@ and joan.smith@ are two people whose names
    differ by a letter, not one person twice (the model takes fields as independent)."""
    levels = {field: comparison(a, b) for field, comparison in COMPARISONS.items()}
    if levels["email"] == "typo" and levels["name"] not in ("exact", "reordered"):
        levels["email"] = "different"
    return levels
