"""Crypto-shredding, master-key rotation and offline-verifiable audit exports on each backend."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from commands import messages as m
from commands.service import CommandService, Context
from consumers.store_feed import StoreFeed
from infra.data_keys import CustomerKeyShredded, MasterKeyMissing, MasterKeys, new_master_key
from infra.readstore import open_read_store
from infra.store import EventStore
from infra.tamper_evidence import seals
from infra.tamper_evidence.export import export_lines

CTX = Context(actor="privacy-test")
OLD = f"old:{new_master_key()}"
NEW = f"new:{new_master_key()}"
VERIFIER = Path(__file__).parents[2] / "infra" / "tamper_evidence" / "offline_verify.py"
SEAL_KEY = b"test-seal-key"


def keys(spec: str) -> MasterKeys:
    return MasterKeys.parse(spec)


class TestPrivacy:
    def open(self, database_url: str, spec: str, snapshots: int = 0) -> EventStore:
        return EventStore(database_url, master_keys=keys(spec), snapshot_interval=snapshots)

    @pytest.fixture
    def store(self, database_url: str) -> Iterator[EventStore]:
        store = self.open(database_url, OLD, snapshots=3)
        yield store
        store.close()

    def customers(self, store: EventStore, count: int = 3) -> list[UUID]:
        service = CommandService(store, default_region="DE", index_key="k")
        ids = []
        for i in range(count):
            outcome = service.execute(
                m.RegisterCustomer(name=f"Person {i}", email=f"person{i}@example.com"), CTX
            )
            assert outcome.customer_id is not None
            for n in range(3):
                service.execute(
                    m.RecordContact(
                        customer_id=outcome.customer_id,
                        channel="email",
                        direction="outbound",
                        summary=f"note {i}/{n}",
                    ),
                    CTX,
                )
            ids.append(outcome.customer_id)
        return ids

    def key_rows(self, store: EventStore) -> dict[str, tuple[Any, ...]]:
        db = open_read_store(store.database_url, pool_size=1)
        try:
            with db.transaction() as tx:
                rows = tx.fetchall("SELECT customer_id, master_key_id, wrapped FROM customer_keys")
        finally:
            db.close()
        return {row[0]: tuple(row[1:]) for row in rows}

    def test_erasure_shreds_key_and_snapshots_in_the_same_transaction(
        self, store: EventStore
    ) -> None:
        gone, kept, _ = self.customers(store)
        assert store.snapshots is not None and list(store.snapshots.get(gone))
        CommandService(store, default_region="DE", index_key="k").execute(
            m.EraseCustomer(customer_id=gone), CTX
        )
        rows = self.key_rows(store)
        assert rows[gone.hex] == (None, None) and rows[kept.hex][0] == "old"
        assert list(store.snapshots.get(gone)) == []
        other = self.open(store.database_url, OLD)  # another process: nothing cached
        try:
            assert other.customer(gone).name is None
            opened = [e for e in StoreFeed(other).read(0, 1000) if e.customer_id == gone]
            assert [e.data.get("summary") for e in opened[1:4]] == [None] * 3
            assert other.customer(kept).name == "Person 1"
        finally:
            other.close()

    def test_keys_a_racing_writer_stored_first_are_the_ones_used(self, store: EventStore) -> None:
        """Creating keys (one statement on PostgreSQL) answers, for a customer whose key another
        writer stored between our miss and our insert, the stored key (or its shredding), and
        for the others the keys just stored; nothing is overwritten."""
        won, shredded, new = (uuid4().hex for _ in range(3))
        winner = self.open(store.database_url, OLD)
        try:
            theirs = winner.data_keys.for_writing([won, shredded])
            winner.data_keys.shred([shredded])
        finally:
            winner.close()
        master = store.data_keys.master
        rows = [(c, *master.wrap(c, AESGCM.generate_key(256))) for c in (won, shredded, new)]
        created = store.data_keys._create(
            rows
        )  # the step after a miss, as a racing writer meets it
        stored = self.key_rows(store)
        assert {c: tuple(row[1:]) for c, row in created.items()} == {
            won: stored[won],
            shredded: (None, None),
            new: tuple(rows[2][1:]),
        }
        assert master.unwrap(won, *stored[won]) == theirs[won]
        assert stored[new] == tuple(rows[2][1:])
        store.data_keys.clear_cache()
        assert store.data_keys.for_writing([won, new])[won] == theirs[won]
        with pytest.raises(CustomerKeyShredded):
            store.data_keys.for_writing([shredded])

    def test_rotation_rewraps_so_the_old_master_key_can_go(self, store: EventStore) -> None:
        ids = self.customers(store)
        before = [n.state for n in store.notifications(0, 1000)]
        rotating = self.open(store.database_url, f"{NEW},{OLD}")
        try:
            assert rotating.data_keys.rotate() == len(ids)
            assert rotating.data_keys.rotate() == 0
        finally:
            rotating.close()
        assert {row[0] for row in self.key_rows(store).values()} == {"new"}
        rotated = self.open(store.database_url, NEW)
        try:
            assert [rotated.customer(c).email for c in ids] == [
                f"person{i}@example.com" for i in range(len(ids))
            ]
            assert [n.state for n in rotated.notifications(0, 1000)] == before
        finally:
            rotated.close()
        stale = self.open(store.database_url, OLD)
        try:
            with pytest.raises(MasterKeyMissing):
                stale.customer(ids[0])
        finally:
            stale.close()

    def test_export_verifies_offline_and_tampering_is_named(
        self, store: EventStore, tmp_path: Path
    ) -> None:
        ids = self.customers(store)
        CommandService(store, default_region="DE", index_key="k").execute(
            m.EraseCustomer(customer_id=ids[0]), CTX
        )
        db = open_read_store(store.database_url, pool_size=1)
        try:
            seals.seal(db, SEAL_KEY)
            lines = list(export_lines(store, db))
        finally:
            db.close()
        records = [orjson.loads(line) for line in lines]
        events = [r for r in records if r["record"] == "event"]
        assert len(events) == 3 * 4 + 1 and [r["record"] for r in records].count("seal") == 1
        assert b"person0@example.com" not in b"".join(lines)  # erased: ciphertext only
        assert b"person1@example.com" not in b"".join(lines)  # live: still only ciphertext
        assert self.verify(tmp_path, lines) == (0, "OK")

        edited = list(lines)
        index = next(
            i
            for i, r in enumerate(records)
            if r["record"] == "event" and r["envelope"]["version"] == 2
        )
        record = records[index]
        state = orjson.loads(base64.b64decode(record["stored"]["state"]))
        state["channel"] = "phone"
        record["stored"]["state"] = base64.b64encode(orjson.dumps(state)).decode()
        edited[index] = orjson.dumps(record) + b"\n"
        code, out = self.verify(tmp_path, edited)
        who = f"{record['stored']['originator_id']} version 2"
        assert code == 1 and f"{who}: stored bytes do not match their hash" in out

        dropped = [line for i, line in enumerate(lines) if i != index]
        code, out = self.verify(tmp_path, dropped)
        assert (
            code == 1
            and f"{record['stored']['originator_id']} version 3: does not follow version 1" in out
        )

        seal = dict(records[-1])
        seal["heads"] = seal["heads"] + " "
        code, out = self.verify(tmp_path, [*lines[:-1], orjson.dumps(seal) + b"\n"])
        assert code == 1 and "seal 1: signature does not match its content" in out

    def verify(self, tmp_path: Path, lines: list[bytes]) -> tuple[int, str]:
        path = tmp_path / "export.jsonl"
        path.write_bytes(b"".join(lines))
        done = subprocess.run(
            [sys.executable, "-I", str(VERIFIER), str(path), "--seal-key", SEAL_KEY.decode()],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.returncode, done.stdout.strip()
