"""The packed binary arrays (:mod:`infra.pg_arrays`) reach PostgreSQL as the very arrays
psycopg's own element-by-element dumping sends, and the write path sends them."""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.adapt import PyFormat
from psycopg.types.array import ListBinaryDumper, ListDumper

from commands import messages as m
from commands.service import CommandService, Context
from infra.pg_arrays import Bigints, Byteas, Packed, Texts, Uuids
from infra.store import WATCHED_TOPICS, EventStore

BATCH = 40

COLUMNS: list[tuple[type[Packed], str, list[Any]]] = [
    (
        Uuids,
        "uuid[]",
        [UUID(int=0), UUID("0b5f4f0e-8d8a-5c1e-8f55-7f1f0c2f3a61"), UUID(int=2**128 - 1)],
    ),
    (Bigints, "bigint[]", [0, 1, -1, 2**63 - 1, -(2**63), 500]),
    (Texts, "text[]", ["", "clientele.customer:Registered", "ünïcødé ✓", "a\tb\nc", "{,}\"'\\"]),
    (Byteas, "bytea[]", [b"", b"\x00\x01\xff", b'{"a": 1}' * 100]),
]


def test_packed_arrays_equal_psycopgs_arrays(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as connection:
        for packed, kind, values in COLUMNS:
            for sample in (values, values[:1], []):
                row = connection.execute(
                    f"SELECT %b::{kind} = %b::{kind}, %b::{kind}, cardinality(%b::{kind}), "
                    f"array_lower(%b::{kind}, 1)",
                    [packed(sample), sample, packed(sample), packed(sample), packed(sample)],
                ).fetchone()
                assert row is not None
                same, back, count, lower = row
                assert same is True, (kind, sample)
                assert list(back) == sample and count == len(sample)
                assert lower == (1 if sample else None)
            dumper = connection.adapters.get_dumper(packed, PyFormat.BINARY)(packed)
            assert not isinstance(dumper, ListBinaryDumper)  # not element by element
            assert dumper.dump(packed(values)) == packed(values).pack()


def test_packed_arrays_unnest_in_order(postgres_url: str) -> None:
    ids, versions = [UUID(int=n) for n in range(1, 501)], list(range(500, 0, -1))
    with psycopg.connect(postgres_url) as connection:
        rows = connection.execute(
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[])", [Uuids(ids), Bigints(versions)]
        ).fetchall()
    assert rows == list(zip(ids, versions, strict=True))


def test_the_write_path_sends_packed_arrays(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registrations, then everyday commands, in batches on PostgreSQL: every array that
    grows with the batch (the events' columns and their conflict check, the hash links and
    their heads, the prefetch's ids and versions, the data keys) goes packed; psycopg's
    element-by-element dumpers see only the erasure watch's few topics."""
    packed: Counter[str] = Counter()
    listed: list[int] = []
    pack, dumps = Packed.pack, {cls: cls.dump for cls in (ListDumper, ListBinaryDumper)}

    def counted_pack(self: Packed, encoding: str = "utf-8") -> bytes:
        packed[type(self).__name__] += len(self)
        return pack(self, encoding)

    def counted_dump(cls: type[Any]) -> Any:
        def dump(self: Any, obj: list[Any]) -> Any:
            listed.append(len(obj))
            return dumps[cls](self, obj)

        return dump

    monkeypatch.setattr(Packed, "pack", counted_pack)
    for cls in dumps:
        monkeypatch.setattr(cls, "dump", counted_dump(cls))
    store = EventStore(postgres_url)
    try:
        service = CommandService(store, default_region="DE", index_key="arrays")
        ctx = Context(actor="arrays")
        registered = [
            m.RegisterCustomer(name=f"Customer {n}", email=f"c{n}@arrays.example")
            for n in range(BATCH)
        ]
        ids = [o.customer_id for o in service.execute_batch(registered, ctx)]
        assert all(isinstance(i, UUID) for i in ids)
        everyday: list[m.Command] = []
        for n, customer in enumerate(ids * 2):
            assert customer is not None
            everyday.append(m.TagCustomer(customer_id=customer, tag=f"t{n % 3}"))
            everyday.append(
                m.RecordPurchase(
                    customer_id=customer, order_id=f"o-{n}", amount="1.50", currency="EUR"
                )
            )
        outcomes = service.execute_batch(everyday, ctx)
        assert all(o.status == "accepted" for o in outcomes)
    finally:
        store.close()
    assert {"Uuids", "Bigints", "Texts", "Byteas"} <= set(packed)
    assert packed["Byteas"] >= 2 * BATCH + len(everyday)  # every event's state, keys too
    assert max(listed, default=0) <= len(WATCHED_TOPICS), listed
