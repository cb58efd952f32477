"""The SQLite recorder finds the hash chain's heads by index, whatever the table's size."""

from __future__ import annotations

import sqlite3

from infra.tamper_evidence.chain import HASHES_DDL, sqlite_heads


def test_heads_are_probed_by_primary_key_not_scanned() -> None:
    db = sqlite3.connect(":memory:")
    db.execute(HASHES_DDL)
    db.executemany(
        "INSERT INTO event_hashes VALUES (?, ?, 'p', ?)",
        [(f"{n:032x}", version, f"h{n}.{version}") for n in range(300) for version in (1, 2)],
    )
    pairs = [(f"{n:032x}", 2) for n in range(0, 300, 3)] + [("missing", 1)]
    params = [value for pair in pairs for value in pair]
    plan = " ".join(
        row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sqlite_heads(len(pairs))}", params)
    )
    assert (
        "SEARCH e USING INDEX" in plan and "SCAN e" not in plan and "SCAN event_hashes" not in plan
    )
    found = db.execute(sqlite_heads(len(pairs)), params).fetchall()
    assert sorted(found) == sorted((f"{n:032x}", 2, f"h{n}.2") for n in range(0, 300, 3))
