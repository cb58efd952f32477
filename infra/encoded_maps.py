"""The stored bytes of a customer's growing maps, kept from one snapshot to the next.

A customer snapshot holds the whole state, and most of it is in maps that only grow: the
orders in ``purchases`` (and ``refunded``, ``campaigns``). Encoding them was the snapshot's
dominant cost: 7,000 orders, 14,000 tagged values (a decimal and a datetime each), 6.9 ms of
the 7th batch's 11-13 ms snapshot (BENCHMARKS.md, performance round 11), paid by the one batch
that took the snapshot. :class:`EncodedMaps` keeps, per snapshotted customer and map, the
encoded entries with the entries they encode: each save encodes the entries it added
(:meth:`EncodedMaps.follow`, O(entries added)), and a snapshot gets an ``orjson.Fragment`` of
the kept bytes (:meth:`EncodedMaps.substitute`). So every order is encoded once, by the batch
that recorded it, and the snapshot's bytes are exactly those of encoding the whole map: the
stored form does not change (no version tag, nothing to upcast;
``tests/unit/test_encoded_maps.py::test_the_store_writes_the_bytes_of_a_whole_encoding`` pins
it).

Why the kept bytes are right: a snapshot uses them only after checking, whole, that the map's
keys start with the kept keys in the same order and that the entries under them are the very
objects encoded (identity, not equality: ``Decimal("12.5")`` equals ``Decimal("12.50")`` but
is stored differently). Entries are replaced, never changed in place (every fold builds a new
one: :mod:`domain.events`), so an identical entry encodes to the same bytes. Anything else (a
refund or an unmerge took an order out, the customer was loaded afresh from the store) fails
the check, and the snapshot encodes the map whole, as before. A limitation: any refund or
unmerge that takes an entry out of ``purchases`` drops its kept copy, so the next snapshot
encodes every order again (removal is not supported: the gain is for maps that only grow).
None of these maps is personal data (they are stored in clear, beside the sealed token;
checked below), so the kept bytes hold no personal data; the store still drops an erased customer's (:meth:`EncodedMaps.forget`).

The check and the splice are O(entries) in C, once per snapshot (list and identity
comparisons, one copy of the bytes: about 0.5 ms at 7,000 orders), where the encoding was
O(entries) in Python calls. Only the large maps of customers snapshotted at least once are
followed, and memory is bounded by ``budget`` bytes (least recently used first out).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from itertools import islice
from operator import is_
from typing import Any
from uuid import UUID

import orjson

from domain.customer import Customer

GROWING_MAPS = ("purchases", "refunded", "campaigns")
"""The Customer fields whose entries accumulate with the history (order or campaign id -> entry)."""
if set(GROWING_MAPS) & set(Customer.PERSONAL):  # not an assert: it must hold under -O too
    raise ImportError("sealed fields must be encoded afresh, never kept")
ENTRY_OVERHEAD = 500
"""Bytes counted per kept entry beyond its encoding: its objects (an order's key, dict, decimal
and datetime: ~485 bytes), which the kept lists hold alive once the aggregate is gone, and two
list slots."""


class _Kept:
    """One map's kept encoding: its keys and entries in order, and their encoded members
    (``"key":value`` joined by commas, no braces) in chunks, joined when a snapshot needs them."""

    __slots__ = ("chunks", "entries", "keys", "size")

    def __init__(self, keys: list[str], entries: list[Any], members: bytes) -> None:
        self.keys, self.entries = keys, entries
        self.chunks: list[bytes | memoryview] = [members]
        self.size = len(members) + ENTRY_OVERHEAD * len(keys)

    def add(self, keys: list[str], entries: list[Any], members: bytes) -> None:
        """Append entries that follow the kept ones, with their encoded members."""
        self.keys += keys
        self.entries += entries
        self.chunks.append(members)
        self.size += len(members) + ENTRY_OVERHEAD * len(keys)

    def encoded(self) -> bytes:
        """The encoded map: one copy of the chunks, which then stand as one (a view of it)."""
        parts: list[bytes | memoryview] = [b"{"]
        for chunk in self.chunks:
            parts += (chunk, b",")
        parts[-1] = b"}"
        joined = b"".join(parts)
        self.chunks = [memoryview(joined)[1:-1]]
        return joined


class EncodedMaps:
    """Encoded growing maps of snapshotted customers, by customer id; thread-safe.

    ``encode`` is the store's transcoder's (the bytes must be the ones it writes). Maps of
    fewer than ``min_entries`` entries are not kept (their encoding is cheap: 200 orders,
    ~0.4 ms); what is kept counts against ``budget`` bytes.
    """

    def __init__(
        self,
        encode: Callable[[Any], bytes],
        *,
        min_entries: int = 200,
        budget: int = 64 * 1024 * 1024,
    ) -> None:
        self._encode = encode
        self.min_entries = min_entries
        self.budget = budget
        self._kept: OrderedDict[UUID, dict[str, _Kept]] = OrderedDict()
        self._size = 0
        self._forgets = 0  # forget() calls that dropped ids: a keep taken before one is refused
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def substitute(self, customer_id: UUID, state: dict[str, Any]) -> None:
        """Replace each large growing map in a snapshot's ``state`` (a copy of the aggregate's
        ``vars``) with its encoded form, built on what is kept for the customer when the map
        starts with exactly the kept entries (checked here, whole), else encoded whole; keep
        the encodings for the next snapshot."""
        kept, stamp = self._take(customer_id)
        fresh = {}
        for field in GROWING_MAPS:
            value = state.get(field)
            if isinstance(value, dict) and value and len(value) >= self.min_entries:
                fresh[field] = self._checked(kept.get(field), value)
                state[field] = orjson.Fragment(fresh[field].encoded())
        self._keep(customer_id, fresh, stamp)

    def follow(self, customer_id: UUID, state: dict[str, Any]) -> None:
        """After a save without a snapshot: encode the entries a kept customer's maps gained
        (their last ones; each entry is encoded once, by the save that recorded it, not again
        by the next snapshot). O(entries added): what they follow is checked by the next
        :meth:`substitute`. A map that shrank is dropped (the next snapshot encodes it whole)."""
        kept, stamp = self._take(customer_id)
        fresh = {}
        for field, before in kept.items():
            value = state.get(field)
            if not isinstance(value, dict) or len(value) < len(before.keys):
                continue
            added = len(value) - len(before.keys)
            if added:
                tail = list(islice(reversed(value.items()), added))[::-1]
                before.add(
                    [k for k, _ in tail], [e for _, e in tail], self._encode(dict(tail))[1:-1]
                )
            fresh[field] = before
        self._keep(customer_id, fresh, stamp)

    def forget(self, customer_ids: Iterable[UUID]) -> None:
        """Drop what is kept for these customers (erased: their snapshots are gone), and
        refuse what a save that began before keeps (:meth:`_keep`): it may hold theirs."""
        dropped = list(customer_ids)
        if not dropped:
            return
        with self._lock:
            self._forgets += 1
            for customer_id in dropped:
                self._size -= _size(self._kept.pop(customer_id, {}))

    def _checked(self, kept: _Kept | None, mapping: dict[str, Any]) -> _Kept:
        """``mapping``'s encoding: ``kept`` (with the entries it lacks added) when the mapping
        starts with exactly its entries (the same keys in the same order, under the very same
        entry objects), else a whole encoding."""
        keys, entries = list(mapping), list(mapping.values())
        count = len(kept.keys) if kept is not None else 0
        if (
            kept is None
            or count > len(keys)
            or keys[:count] != kept.keys
            or not all(map(is_, islice(entries, count), kept.entries))
        ):
            return _Kept(keys, entries, self._encode(mapping)[1:-1])
        if count < len(keys):
            added = dict(zip(keys[count:], entries[count:], strict=True))
            kept.add(keys[count:], entries[count:], self._encode(added)[1:-1])
        return kept

    def _take(self, customer_id: UUID) -> tuple[dict[str, _Kept], int]:
        """What is kept for the customer (taken out: a save owns it until :meth:`_keep`), and
        the count of forgets so far (the stamp :meth:`_keep` checks)."""
        with self._lock:
            kept = self._kept.pop(customer_id, {})
            self._size -= _size(kept)
            return kept, self._forgets

    def _keep(self, customer_id: UUID, kept: dict[str, _Kept], stamp: int) -> None:
        """Keep ``kept`` for the customer unless an erasure came since :meth:`_take` gave
        ``stamp`` (rare: the next snapshot then encodes whole). Another save of the same
        customer may have kept its own meanwhile: replaced, its size subtracted."""
        size = _size(kept)
        if not kept or size > self.budget:
            return
        with self._lock:
            if stamp != self._forgets:
                return
            self._size += size - _size(self._kept.pop(customer_id, {}))
            self._kept[customer_id] = kept
            while self._size > self.budget:
                self._size -= _size(self._kept.popitem(last=False)[1])


def _size(kept: dict[str, _Kept]) -> int:
    return sum(k.size for k in kept.values())
