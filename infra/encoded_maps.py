"""The stored bytes of a customer's growing maps, kept from one snapshot to the next.

A customer snapshot holds the whole state, and most of it is in maps that only grow: the
orders in ``purchases`` (and ``refunded``, ``campaigns``). Encoding them was the snapshot's
dominant cost: 7,000 orders, 14,000 tagged values (a decimal and a datetime each), 6.9 ms of
the 7th batch's 11-13 ms snapshot (BENCHMARKS.md, performance round 11), paid by the one batch
that took the snapshot. :class:`EncodedMaps` keeps, per snapshotted customer and map, the
encoded map with the entries it encodes: each save encodes the entries it added
(:meth:`EncodedMaps.follow`), and a snapshot gets an ``orjson.Fragment`` of the kept bytes
(:meth:`EncodedMaps.substitute`). So every order is encoded once, by the batch that recorded
it, and the snapshot's bytes are exactly those of encoding the whole map: the stored form does
not change (no version tag, nothing to upcast; the golden stored forms pin it).

Why the kept bytes are right: they are reused only when the map's keys start with the kept
keys, in the same order, and the entries under them are the very objects encoded (identity,
not equality: ``Decimal("12.5")`` equals ``Decimal("12.50")`` but is stored differently).
Entries are replaced, never changed in place (every fold builds a new one:
:mod:`domain.events`), so an identical entry encodes to the same bytes. Anything else (a refund
or an unmerge took an order out, the customer was loaded afresh from the store) drops what is
kept, and the next snapshot encodes the map whole, as before. None of
these maps is personal data (they are stored in clear, beside the sealed token; checked
below), so the kept bytes hold no personal data; the store still drops an erased customer's
(:meth:`EncodedMaps.forget`).

The checks and the splice are O(entries) in C (list and identity comparisons, one copy of the
bytes), where the encoding was O(entries) in Python calls: at 7,000 orders about 0.2 ms. Only
the large maps of customers snapshotted at least once are followed, and memory is bounded by
``budget`` bytes (least recently used first out).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from operator import is_
from typing import Any
from uuid import UUID

import orjson

from domain.customer import Customer

GROWING_MAPS = ("purchases", "refunded", "campaigns")
"""The Customer fields whose entries accumulate with the history (order or campaign id -> entry)."""
assert not set(GROWING_MAPS) & set(Customer.PERSONAL), "sealed fields must be encoded afresh"
ENTRY_OVERHEAD = 16  # bytes counted per kept entry (two list slots) against the budget


@dataclass(frozen=True, slots=True)
class _Kept:
    keys: list[str]
    entries: list[Any]
    encoded: bytes  # the encoded map, braces included

    @property
    def size(self) -> int:
        return len(self.encoded) + ENTRY_OVERHEAD * len(self.keys)


class EncodedMaps:
    """Encoded growing maps of snapshotted customers, by customer id; thread-safe.

    ``encode`` is the store's transcoder's (the bytes must be the ones it writes). Maps of
    fewer than ``min_entries`` entries are not kept (their encoding is cheap: 200 orders,
    ~0.3 ms); what is kept counts against ``budget`` bytes.
    """

    def __init__(
        self,
        encode: Callable[[Any], bytes],
        *,
        min_entries: int = 200,
        budget: int = 32 * 1024 * 1024,
    ) -> None:
        self._encode = encode
        self.min_entries = min_entries
        self.budget = budget
        self._kept: OrderedDict[UUID, dict[str, _Kept]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def substitute(self, customer_id: UUID, state: dict[str, Any]) -> None:
        """Replace each non-empty growing map in a snapshot's ``state`` (a copy of the
        aggregate's ``vars``) with its encoded form, reusing what is kept for the customer
        where it still holds, and keep the encodings for the next snapshot."""
        kept = self._take(customer_id)
        fresh = {}
        for field in GROWING_MAPS:
            value = state.get(field)
            if type(value) is dict and value and len(value) >= self.min_entries:
                fresh[field] = _encoded(self._encode, kept.get(field), value)
                state[field] = orjson.Fragment(fresh[field].encoded)
        self._keep(customer_id, fresh)

    def follow(self, customer_id: UUID, state: dict[str, Any]) -> None:
        """After a save without a snapshot: encode the entries the save added to a kept
        customer's maps (each entry is encoded once, by the save that recorded it, not again
        by the next snapshot); a map that no longer extends what is kept is dropped (the next
        snapshot encodes it whole)."""
        kept = self._take(customer_id)
        fresh = {}
        for field, before in kept.items():
            value = state.get(field)
            if type(value) is dict:
                keys, entries = list(value), list(value.values())
                if _extends(before, keys, entries):
                    fresh[field] = _extended(self._encode, before, keys, entries)
        self._keep(customer_id, fresh)

    def forget(self, customer_ids: Iterable[UUID]) -> None:
        """Drop what is kept for these customers (erased: their snapshots are gone)."""
        for customer_id in customer_ids:
            self._take(customer_id)

    def _take(self, customer_id: UUID) -> dict[str, _Kept]:
        with self._lock:
            kept = self._kept.pop(customer_id, None)
            if kept is None:
                return {}
            self._size -= _size(kept)
            return kept

    def _keep(self, customer_id: UUID, kept: dict[str, _Kept]) -> None:
        size = _size(kept)
        if not kept or size > self.budget:
            return
        with self._lock:
            self._kept[customer_id] = kept
            self._size += size
            while self._size > self.budget:
                self._size -= _size(self._kept.popitem(last=False)[1])


def _size(kept: dict[str, _Kept]) -> int:
    return sum(k.size for k in kept.values())


def _encoded(encode: Callable[[Any], bytes], kept: _Kept | None, mapping: dict[str, Any]) -> _Kept:
    """``mapping`` encoded, reusing the bytes of ``kept`` when the mapping extends them."""
    keys, entries = list(mapping), list(mapping.values())
    if kept is not None and _extends(kept, keys, entries):
        return _extended(encode, kept, keys, entries)
    return _Kept(keys, entries, encode(mapping))


def _extends(kept: _Kept, keys: list[str], entries: list[Any]) -> bool:
    """Whether a map (its ``keys`` and ``entries`` in order) starts with exactly the kept
    entries: the same keys in the same order, under the very same entry objects."""
    count = len(kept.keys)
    return (
        count <= len(keys)
        and keys[:count] == kept.keys
        and all(map(is_, islice(entries, count), kept.entries))
    )


def _extended(
    encode: Callable[[Any], bytes], kept: _Kept, keys: list[str], entries: list[Any]
) -> _Kept:
    """A map that :func:`_extends` ``kept``, encoded: the kept bytes and the added entries'."""
    count = len(kept.keys)
    if count == len(keys):
        return _Kept(keys, entries, kept.encoded)
    added = encode(dict(zip(keys[count:], entries[count:], strict=True)))
    encoded = b"".join((memoryview(kept.encoded)[:-1], b",", memoryview(added)[1:]))
    return _Kept(keys, entries, encoded)
