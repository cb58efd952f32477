"""``If-Match`` (RFC 9110 §13.1.1) for every route that writes a versioned thing: customers
(:mod:`api.http.routes.writes`) and policies (:mod:`api.http.routes.policies`). A mismatch is
a 412, a required header missing a 428 (both problem+json, see :mod:`api.http.app`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Header

from domain.errors import DomainError, InvalidInput

_TAGS = r"^[ \t]*(?:,[ \t]*)*{tag}(?:[ \t]*,[ \t]*(?:{tag})?)*[ \t]*$"  # RFC 9110 §5.6.1
_ENTITY_TAG = r'(?:W/)?"[!#-~\x80-\xff]*"'  # RFC 9110 §8.8.3 (obs-text arrives as latin-1)
_ENTITY_TAGS = re.compile(_TAGS.format(tag=_ENTITY_TAG))  # a list; empty elements allowed
# No pattern is declared for If-Match: schemathesis generated its values from one so slowly
# (header values filtered one by one) that the stateful run took 570 s instead of 50 s.
IfMatch = Annotated[
    str | None,
    Header(description='Expected version(s): "*", or entity tags such as "3" or "3", "4"'),
]
_TAG_PARTS = re.compile(r'(W/)?"([!#-~\x80-\xff]*)"')
_VERSION = re.compile(r"[1-9][0-9]{0,17}")


class PreconditionRequired(DomainError):
    code = "precondition-required"


class NoCurrentVersion(DomainError):
    """If-Match named no version the target is at: absent target, or only weak tags."""

    code = "precondition-failed"


class PreconditionFailed(Exception):
    """If-Match named another version (412), or a required If-Match was missing (428)."""

    def __init__(self, status: int, error: DomainError) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error


@dataclass(frozen=True)
class IfMatchHeader:
    """A parsed ``If-Match``: ``*`` or the versions its strong tags name.

    Comparison is strong, so weak tags (``W/"3"``) and tags that are not one of our
    versions (``"03"``, ``"abc"``) never match."""

    any: bool
    versions: frozenset[int]

    def matches(self, current: int | None) -> bool:
        """Whether a target at version ``current`` (None: absent) satisfies the header."""
        return current is not None and (self.any or current in self.versions)


def parse_if_match(value: str) -> IfMatchHeader:
    """``*`` or a comma-separated list of entity tags; other syntax is a 422 naming If-Match."""
    if value.strip(" \t") == "*":
        return IfMatchHeader(any=True, versions=frozenset())
    if not _ENTITY_TAGS.match(value):
        raise InvalidInput("If-Match", 'must be "*" or entity tags such as "3" (quoted)')
    strong = (tag for weak, tag in _TAG_PARTS.findall(value) if not weak)
    return IfMatchHeader(
        any=False, versions=frozenset(int(t) for t in strong if _VERSION.fullmatch(t))
    )


def if_match_header(if_match: str | None, *, required: bool = False) -> IfMatchHeader | None:
    """The parsed header, None when absent (428 when ``required``)."""
    if if_match is None:
        if required:
            missing = PreconditionRequired("If-Match with the current version is required here")
            raise PreconditionFailed(428, missing)
        return None
    return parse_if_match(if_match)
