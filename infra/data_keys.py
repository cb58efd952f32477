"""Per-customer data keys wrapped by master keys (envelope encryption), and crypto-shredding.

Each customer gets a random 256-bit data key the first time personal data of theirs is stored.
It is kept only *wrapped* — AES-256-GCM under the current master key, bound to the customer id —
in ``customer_keys``. Erasure *shreds* it: the recorder that stores ``customer.erased`` nulls
the wrapped key (and drops the customer's snapshots) in the SAME transaction, so the ciphertext
that remains in events, backups and topics can never be read again while hash chains stay
intact. Master keys rotate by re-wrapping data keys (:meth:`DataKeys.rotate`), never events.

``CLIENTELE_MASTER_KEYS`` is ``id:base64key[,id:base64key…]``: the first is current (wraps new
and rotated keys), the others are only needed until ``clientele keys rotate-master`` has run.
"""

from __future__ import annotations

import base64
import binascii
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from domain.events import Erased
from infra.sql_chunks import chunks

KEY_BYTES = 32
NONCE_BYTES = 12
WRAP_CONTEXT = b"clientele.datakey.v1\x00"
ERASED_TOPIC = get_topic(Erased)
KEYS_DDL = {
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS customer_keys (customer_id TEXT PRIMARY KEY, "
        "master_key_id TEXT, wrapped BLOB, created_at TEXT NOT NULL, shredded_at TEXT)"
    ),
    "postgres": (
        "CREATE TABLE IF NOT EXISTS customer_keys (customer_id TEXT PRIMARY KEY, "
        "master_key_id TEXT, wrapped BYTEA, created_at TEXT NOT NULL, shredded_at TEXT)"
    ),
}
_SHRED = (
    "INSERT INTO customer_keys (customer_id, created_at, shredded_at) VALUES ({m}, {m}, {m}) "
    "ON CONFLICT (customer_id) DO UPDATE SET master_key_id = NULL, wrapped = NULL, "
    "shredded_at = excluded.shredded_at"
)


class DataKeyError(Exception):
    """Base of data-key failures."""


class CustomerKeyShredded(DataKeyError):
    """Personal data cannot be written for a customer whose key was shredded (erased)."""


class MasterKeyMissing(DataKeyError):
    """A data key is wrapped by a master key that is not configured."""


def now_text() -> str:
    """Now, as the key rows store it (ISO 8601, UTC, microseconds)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_master_key() -> str:
    """A fresh master key, base64 (for ``CLIENTELE_MASTER_KEYS``)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


@dataclass(frozen=True)
class MasterKeys:
    """The configured master keys; ``current`` wraps, every listed key can unwrap."""

    current: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, spec: str) -> MasterKeys:
        """Parse ``id:base64key[,id:base64key…]`` (the first is current)."""
        keys: dict[str, bytes] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key_id, sep, encoded = item.partition(":")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                key = b""
            if not sep or not key_id or len(key) != KEY_BYTES:
                msg = f"master key {key_id or item!r} must be 'id:<base64 of {KEY_BYTES} bytes>'"
                raise ValueError(msg)
            keys[key_id] = key
        if not keys:
            raise ValueError("CLIENTELE_MASTER_KEYS names no key")
        return cls(current=next(iter(keys)), keys=keys)

    def wrap(self, customer: str, data_key: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.current]).encrypt(
            nonce, data_key, WRAP_CONTEXT + customer.encode()
        )
        return self.current, nonce + sealed

    def unwrap(self, customer: str, key_id: str, wrapped: bytes) -> bytes:
        master = self.keys.get(key_id)
        if master is None:
            msg = f"data key of {customer} is wrapped by master key {key_id!r}, not configured"
            raise MasterKeyMissing(msg)
        try:
            return AESGCM(master).decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], WRAP_CONTEXT + customer.encode()
            )
        except InvalidTag:
            raise MasterKeyMissing(
                f"data key of {customer} does not unwrap with {key_id!r}"
            ) from None


Row = tuple[str, str | None, bytes | None]  # customer id (hex), master key id, wrapped key


class DataKeys(ABC):
    """Get-or-create, read, shred and re-wrap customers' data keys (unwrapped keys are cached)."""

    def __init__(self, master: MasterKeys, cache_size: int = 200_000) -> None:
        self.master = master
        self.cache_size = cache_size
        self._cache: dict[str, bytes | None] = {}

    def for_writing(self, customer_ids: Iterable[str]) -> dict[str, bytes]:
        """The keys to encrypt with, created where missing; refuses shredded customers."""
        wanted = set(customer_ids)
        missing = [c for c in wanted if c not in self._cache]
        if missing:
            self._remember(self._load(missing))
            absent = [c for c in missing if c not in self._cache]
            if absent:
                rows = []
                for customer in absent:
                    key_id, wrapped = self.master.wrap(customer, AESGCM.generate_key(256))
                    rows.append((customer, key_id, wrapped))
                self._remember(self._create(rows))  # a racing writer's key wins
        keys = {}
        for customer in wanted:
            key = self._cache.get(customer)
            if key is None:
                raise CustomerKeyShredded(f"customer {customer} is erased: no personal data")
            keys[customer] = key
        return keys

    def for_writing_one(self, customer_id: str) -> bytes:
        """:meth:`for_writing` of one customer; a key already held is returned without the
        sets and lists of the batch form (every sealed event asks, its batch's keys held)."""
        key = self._cache.get(customer_id)
        return key if key is not None else self.for_writing([customer_id])[customer_id]

    def preload(self, customer_ids: Iterable[str]) -> None:
        """Load the keys of many customers with one query per 500 (before opening a batch)."""
        missing = [c for c in set(customer_ids) if c not in self._cache]
        if missing:
            self._remember(self._load(missing))

    def for_reading(self, customer_id: str) -> bytes | None:
        """The customer's key, or None when shredded (or never created)."""
        if customer_id not in self._cache:
            found = self._load([customer_id])
            self._remember(found)
            if customer_id not in found:
                return None
        return self._cache.get(customer_id)

    def shred(self, customer_ids: Sequence[str]) -> None:
        """Destroy keys (idempotent). Recorders do this atomically with ``customer.erased``."""
        self._shred(customer_ids)
        self.forget(customer_ids)

    def forget(self, customer_ids: Iterable[str]) -> None:
        """Drop cached keys (after an erasure in this process)."""
        for customer in customer_ids:
            self._cache.pop(customer, None)

    def clear_cache(self) -> None:
        """Forget every unwrapped key (as a freshly started process)."""
        self._cache.clear()

    def rotate(self, batch: int = 1000) -> int:
        """Re-wrap every data key not wrapped by the current master key; returns how many."""
        done = 0
        while rows := self._stale(self.master.current, batch):
            rewrapped = []
            for customer, key_id, wrapped in rows:
                assert key_id is not None and wrapped is not None
                plain = self.master.unwrap(customer, key_id, wrapped)
                rewrapped.append((customer, *self.master.wrap(customer, plain)))
            self._rewrap(rewrapped)
            done += len(rows)
        return done

    def _remember(self, rows: dict[str, Row]) -> None:
        if len(self._cache) + len(rows) > self.cache_size:
            self._cache.clear()
        for customer, (_, key_id, wrapped) in rows.items():
            self._cache[customer] = (
                None
                if key_id is None or wrapped is None
                else self.master.unwrap(customer, key_id, wrapped)
            )

    @abstractmethod
    def _load(self, customer_ids: Sequence[str]) -> dict[str, Row]: ...

    @abstractmethod
    def _insert(self, rows: Sequence[Row]) -> None: ...

    def _create(self, rows: Sequence[Row]) -> dict[str, Row]:
        """Store new keys where none exists (ON CONFLICT DO NOTHING); return the rows that
        are stored now, by customer: ours, or a racing writer's that won."""
        self._insert(rows)
        return self._load([row[0] for row in rows])

    @abstractmethod
    def _shred(self, customer_ids: Sequence[str]) -> None: ...

    @abstractmethod
    def _stale(self, current: str, limit: int) -> list[Row]: ...

    @abstractmethod
    def _rewrap(self, rows: Sequence[Row]) -> None: ...


class MemoryDataKeys(DataKeys):
    """In-process keys for ``memory://`` stores (unit tests): ``rows`` are the recorder's, which
    shreds them with the erasure (:mod:`infra.backends.memory`)."""

    def __init__(self, master: MasterKeys, rows: dict[str, Row]) -> None:
        super().__init__(master)
        self.rows = rows

    def _load(self, customer_ids: Sequence[str]) -> dict[str, Row]:
        return {c: self.rows[c] for c in customer_ids if c in self.rows}

    def _insert(self, rows: Sequence[Row]) -> None:
        for row in rows:
            self.rows.setdefault(row[0], row)

    def _shred(self, customer_ids: Sequence[str]) -> None:
        self.rows.update({c: (c, None, None) for c in customer_ids})

    def _stale(self, current: str, limit: int) -> list[Row]:
        rows = [r for r in self.rows.values() if r[1] is not None and r[1] != current]
        return rows[:limit]

    def _rewrap(self, rows: Sequence[Row]) -> None:
        self.rows.update({row[0]: row for row in rows})


class SqlDataKeys(DataKeys):
    """Keys in ``customer_keys`` beside the events, through the recorder's own datastore."""

    def __init__(self, master: MasterKeys, datastore: Any, dialect: str) -> None:
        super().__init__(master)
        self.datastore = datastore
        self.mark = "%s" if dialect == "postgres" else "?"

    def _rows(self, query: str, params: Sequence[Any], *, commit: bool = False) -> list[Row]:
        with self.datastore.transaction(commit=commit) as cursor:
            cursor.execute(query, params)
            return [
                (r["customer_id"], r["master_key_id"], _bytes(r["wrapped"]))
                for r in cursor.fetchall()
            ]

    def _write(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self.datastore.transaction(commit=True) as cursor:
                cursor.executemany(statement, rows)

    def _load(self, customer_ids: Sequence[str]) -> dict[str, Row]:
        found: dict[str, Row] = {}
        for chunk in chunks(customer_ids):
            marks = ",".join([self.mark] * len(chunk))
            query = (
                "SELECT customer_id, master_key_id, wrapped FROM customer_keys "
                f"WHERE customer_id IN ({marks})"
            )
            found.update({row[0]: row for row in self._rows(query, chunk)})
        return found

    def _insert(self, rows: Sequence[Row]) -> None:
        m, created_at = self.mark, now_text()
        self._write(
            "INSERT INTO customer_keys (customer_id, master_key_id, wrapped, created_at) "
            f"VALUES ({m}, {m}, {m}, {m}) ON CONFLICT (customer_id) DO NOTHING",
            [(*row, created_at) for row in rows],
        )

    def _shred(self, customer_ids: Sequence[str]) -> None:
        at = now_text()
        self._write(_SHRED.format(m=self.mark), [(c, at, at) for c in customer_ids])

    def _stale(self, current: str, limit: int) -> list[Row]:
        return self._rows(
            "SELECT customer_id, master_key_id, wrapped FROM customer_keys "
            f"WHERE wrapped IS NOT NULL AND master_key_id <> {self.mark} "
            f"ORDER BY customer_id LIMIT {int(limit)}",
            [current],
        )

    def _rewrap(self, rows: Sequence[Row]) -> None:
        m = self.mark
        self._write(
            f"UPDATE customer_keys SET master_key_id = {m}, wrapped = {m} WHERE customer_id = {m}",
            [(key_id, wrapped, customer) for customer, key_id, wrapped in rows],
        )


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def erased_customers(stored_events: Sequence[StoredEvent]) -> list[str]:
    """Hex ids of the customers a batch of stored events erases."""
    return sorted({_hex(e.originator_id) for e in stored_events if e.topic == ERASED_TOPIC})


def _hex(originator_id: Any) -> str:
    return str(originator_id.hex) if hasattr(originator_id, "hex") else str(originator_id)


def erasure_targets(stored_events: Sequence[StoredEvent]) -> tuple[list[str], list[UUID]]:
    """What a batch of stored events erases: the customers whose keys to shred (hex ids), and
    those whose snapshots to drop — the erased, and the holders of copies of their data
    (``copies_at``: snapshots seal state with the holder's own key)."""
    dropped: set[UUID] = set()
    for event in stored_events:
        if event.topic == ERASED_TOPIC:
            holders = orjson.loads(event.state).get("copies_at", [])
            dropped |= {UUID(_hex(event.originator_id)), *map(UUID, holders)}
    return erased_customers(stored_events), sorted(dropped)


def shred_in_transaction(
    cursor: Any, stored_events: Sequence[StoredEvent], mark: str, snapshots_table: str
) -> None:
    """Inside a recorder's insert transaction: shred the keys and drop the snapshots of every
    customer these events erase, and of the holders of copies of their data
    (:func:`erasure_targets`), so the erasure and the shredding commit together."""
    erased, dropped = erasure_targets(stored_events)
    if not erased:
        return
    at = now_text()
    cursor.executemany(_SHRED.format(m=mark), [(c, at, at) for c in erased])
    for customer in dropped:
        cursor.execute(
            f"DELETE FROM {snapshots_table} WHERE originator_id = {mark}",
            (customer if mark == "%s" else customer.hex,),
        )
