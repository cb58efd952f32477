"""Blocking: which pairs are compared at all.

Two records are a candidate pair when they share a blocking key; every key is specific
enough that a block stays small, so the work grows with the number of records times the
block size, not with the number of pairs. A block larger than :data:`MAX_BLOCK` (a shared
office phone, a placeholder email) carries no information and is skipped whole.

Keys: the email key (provider aliases folded), the phone, each external id, the sorted name
tokens (any order of the same words), and first-name/last-name keys that survive a typo in one
of the two (``last|first two letters`` and ``first|last two letters``, both orders, with the
canonical names of a nickname), and the address with its city.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

from domain.duplicates.records import MatchRecord, canonical_first_names

MAX_BLOCK = 300


def exact_keys(record: MatchRecord) -> set[str]:
    """The keys of values kept exactly (email mailbox, phone, external ids, the name's words in
    any order, address): what a registration is looked up by, a few small blocks."""
    keys: set[str] = set()
    if record.email_key:
        keys.add(f"e:{record.email_key}")
    if record.phone:
        keys.add(f"p:{record.phone}")
    keys.update(f"x:{system}:{value}" for system, value in record.external_ids)
    if record.name:
        keys.add("n:" + " ".join(sorted(record.tokens)))
    if record.address:
        keys.add(f"a:{record.address}|{record.city or ''}")
    return keys


def block_keys(record: MatchRecord) -> set[str]:
    """All blocking keys of ``record``: :func:`exact_keys` and the name keys that survive a
    typo in one of the two names (what a scan compares by)."""
    keys = exact_keys(record)
    for first, last, names in (
        (record.first, record.last, record.first_names),
        (record.last, record.first, canonical_first_names(record.last)),
    ):
        if first and last:
            keys.add(f"l:{last}|{first[:2]}")
            keys.update(f"f:{name}|{last[:2]}" for name in names)
    return keys


def candidate_pairs(
    records: Sequence[MatchRecord], changed: Iterable[str] | None = None
) -> Iterator[tuple[int, int]]:
    """Each candidate pair once, as indexes ``(i, j)`` with ``i < j`` into ``records``. With
    ``changed`` (customer ids), only the pairs with at least one changed record."""
    blocks: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        for key in block_keys(record):
            blocks[key].append(index)
    wanted = None if changed is None else set(changed)
    seen: set[tuple[int, int]] = set()
    for members in blocks.values():
        if len(members) < 2 or len(members) > MAX_BLOCK:
            continue
        for x, i in enumerate(members):
            i_changed = wanted is None or records[i].customer_id in wanted
            for j in members[x + 1 :]:
                if not i_changed and wanted is not None and records[j].customer_id not in wanted:
                    continue
                pair = (i, j)
                if pair not in seen:
                    seen.add(pair)
                    yield pair
