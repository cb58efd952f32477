"""Finding the probable duplicates of a base: blocking, then the model on each candidate pair."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson

from domain.duplicates.blocking import candidate_pairs
from domain.duplicates.model import Match, MatchModel
from domain.duplicates.records import MatchRecord


@dataclass(frozen=True, slots=True)
class Candidate:
    """A probable duplicate pair; ``first < second`` (customer ids), so a pair has one name."""

    first: str
    second: str
    match: Match
    fingerprint: str

    @property
    def pair_id(self) -> str:
        return pair_id(self.first, self.second)


def pair_id(a: str, b: str) -> str:
    """The id of the pair of customers ``a`` and ``b`` (either order): ``"<lower>~<higher>"``."""
    low, high = sorted((a, b))
    return f"{low}~{high}"


def fingerprint(a: MatchRecord, b: MatchRecord) -> str:
    """A digest of what was compared of both records (either order): it changes when any
    compared field of either changes, and only then."""
    parts = sorted(
        orjson.dumps(
            [r.customer_id, r.name, r.email, r.phone, r.address, r.city, sorted(r.external_ids)]
        )
        for r in (a, b)
    )
    return hashlib.sha256(b"\n".join(parts)).hexdigest()[:32]


def find_candidates(
    records: Sequence[MatchRecord],
    model: MatchModel,
    min_probability: float,
    changed: Iterable[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Candidate]:
    """Every candidate pair scoring at least ``min_probability``; with ``changed`` (customer
    ids) only pairs with at least one of them. ``progress`` is told the number of pairs compared,
    every 10,000."""
    found: list[Candidate] = []
    compared = 0
    for i, j in candidate_pairs(records, changed):
        a, b = sorted((records[i], records[j]), key=lambda r: r.customer_id)
        match = model.score(a, b)  # in id order: a pair scores the same however it was found
        compared += 1
        if progress is not None and compared % 10_000 == 0:
            progress(10_000)
        if match.probability >= min_probability:
            found.append(Candidate(a.customer_id, b.customer_id, match, fingerprint(a, b)))
    if progress is not None:
        progress(compared % 10_000)
    return found
