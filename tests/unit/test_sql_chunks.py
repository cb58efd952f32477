"""Statements over many values, a chunk each: every value is reached, in order, with one
statement per chunk of 500, never one per value nor one unbounded list."""

from __future__ import annotations

from pathlib import Path

from infra.readstore import open_read_store
from infra.sql_chunks import CHUNK, among, chunks


def test_chunks_cover_the_values_in_order() -> None:
    values = list(range(2 * CHUNK + 1))
    assert [len(c) for c in chunks(values)] == [CHUNK, CHUNK, 1]
    assert [v for c in chunks(values) for v in c] == values
    assert list(chunks([])) == []


def test_among_reads_every_row_with_one_statement_per_chunk(tmp_path: Path) -> None:
    read_store = open_read_store(f"sqlite:///{tmp_path / 'read.db'}")
    ids = [f"c{n:05d}" for n in range(2 * CHUNK + 1)]
    with read_store.transaction() as tx:
        tx.execute("CREATE TABLE states (customer_id TEXT PRIMARY KEY, n BIGINT)")
        tx.insert("states", ("customer_id", "n"), [(c, n) for n, c in enumerate(ids)])
        found, statements = [], 0
        for condition, params in among(tx, "customer_id", [*ids, "absent"]):
            found += tx.fetchall(f"SELECT customer_id FROM {{states}} WHERE {condition}", params)
            statements += 1
        assert statements == 3
        assert sorted(c for (c,) in found) == ids
        assert list(among(tx, "customer_id", [])) == []
    read_store.close()
