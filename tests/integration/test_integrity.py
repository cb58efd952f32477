"""Tamper evidence on both store backends: edits, deletions, reorders and altered seals are
reported precisely; untouched data verifies OK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from infra.tamper_evidence.seals import seal, verify

KEY = b"seal-key-for-tests"
CTX = Context(actor="auditor-test")


class TestIntegrity:
    table: str

    @pytest.fixture
    def world(self, database_url: str) -> Iterator[tuple[EventStore, ReadStore, list[UUID]]]:
        store = EventStore(database_url)
        service = CommandService(store, index_key="k")
        ids = []
        for name in ("Ann", "Bob", "Cid", "Dee"):
            customer = service.execute(m.RegisterCustomer(name=name), CTX).customer_id
            assert customer is not None
            for tag in ("a", "b", "c"):
                service.execute(m.TagCustomer(customer_id=customer, tag=tag), CTX)
            ids.append(customer)
        db = open_read_store(database_url)
        self.table = store.events_table
        yield store, db, ids
        db.close()
        store.close()

    def where(self, db: ReadStore, customer: UUID) -> object:
        return customer if db.dialect == "postgres" else customer.hex

    def test_untouched_history_verifies(
        self, world: tuple[EventStore, ReadStore, list[UUID]]
    ) -> None:
        _, db, ids = world
        seal(db, KEY)
        report = verify(db, KEY, self.table)
        assert report["ok"] and report["problems"] == [] and report["events_checked"] >= 16
        assert verify(db, KEY, self.table, ids[0])["ok"]

    def test_each_kind_of_tampering_is_reported_precisely(
        self, world: tuple[EventStore, ReadStore, list[UUID]]
    ) -> None:
        _, db, (ann, bob, cid, dee) = world
        seal(db, KEY)
        with db.transaction() as tx:
            # 1. edit the bytes of Ann's version 2
            row = tx.fetchone(
                f"SELECT state FROM {self.table} WHERE originator_id = ? AND originator_version = 2",
                (self.where(db, ann),),
            )
            assert row is not None
            tx.execute(
                f"UPDATE {self.table} SET state = ? WHERE originator_id = ? AND originator_version = 2",
                (bytes(row[0]).replace(b'"a"', b'"z"'), self.where(db, ann)),
            )
            # 2. delete Bob's newest event and its hash link (a self-consistent, shorter chain)
            tx.execute(
                f"DELETE FROM {self.table} WHERE originator_id = ? AND originator_version = 4",
                (self.where(db, bob),),
            )
            tx.execute(
                "DELETE FROM event_hashes WHERE originator_id = ? AND originator_version = 4",
                (bob.hex,),
            )
            # 3. swap the bytes of Cid's versions 2 and 3
            v2 = tx.fetchone(
                f"SELECT state FROM {self.table} WHERE originator_id = ? AND originator_version = 2",
                (self.where(db, cid),),
            )
            v3 = tx.fetchone(
                f"SELECT state FROM {self.table} WHERE originator_id = ? AND originator_version = 3",
                (self.where(db, cid),),
            )
            assert v2 is not None and v3 is not None
            for version, state in ((2, v3[0]), (3, v2[0])):
                tx.execute(
                    f"UPDATE {self.table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
                    (bytes(state), self.where(db, cid), version),
                )
        report = verify(db, KEY, self.table)
        assert not report["ok"]
        assert (
            f"{ann} version 2: stored bytes differ from their hash (edited or reordered)"
            in report["problems"]
        )
        assert f"{bob} version 4: sealed in seal 1 but missing or changed" in report["problems"]
        assert (
            f"{cid} version 2: stored bytes differ from their hash (edited or reordered)"
            in report["problems"]
        )
        assert not any(str(dee) in problem for problem in report["problems"])
        assert verify(db, KEY, self.table, dee)["ok"]
        # 4. change a seal
        with db.transaction() as tx:
            tx.execute("UPDATE audit_seals SET heads = REPLACE(heads, '[4,', '[5,') WHERE seq = 1")
        assert any(
            "seal 1" in p and "altered" in p for p in verify(db, KEY, self.table)["problems"]
        )
        assert not verify(db, b"wrong key", self.table)["ok"]


def test_envelopes_carry_the_chain(tmp_path: Path) -> None:
    from consumers.store_feed import StoreFeed  # noqa: PLC0415
    from infra.tamper_evidence.chain import GENESIS  # noqa: PLC0415

    store = EventStore(f"sqlite:///{tmp_path / 'chain.db'}")
    try:
        service = CommandService(store, index_key="k")
        customer = service.execute(m.RegisterCustomer(name="Ann"), CTX).customer_id
        service.execute(m.TagCustomer(customer_id=customer, tag="x"), CTX)
        first, second = StoreFeed(store).read(0, 10)
        assert first.prev_hash == GENESIS and first.hash and second.prev_hash == first.hash
        assert second.hash and second.hash != first.hash
    finally:
        store.close()
