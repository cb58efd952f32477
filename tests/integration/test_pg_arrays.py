"""The packed binary arrays (:mod:`infra.pg_arrays`) reach PostgreSQL as the very arrays
psycopg's own element-by-element dumping sends."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.adapt import PyFormat
from psycopg.types.array import ListBinaryDumper

from infra.pg_arrays import Bigints, Byteas, Packed, Texts, Uuids

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
