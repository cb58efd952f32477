"""Reading the segments read model (:mod:`projections.segments`): definitions, members now
or as of a time, and membership changes in log order (the membership publisher's cursor)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from domain.segment_rules import Rule
from domain.values import check_aware, utc_text
from infra.read_tx import Tx
from projections.profiles import decode_cursor, encode_cursor

Cursor = tuple[int, str, str]  # (position, segment id, customer id) of a change
START: Cursor = (0, "", "")
VIEW = ("segment_id", "name", "rule", "purpose", "version", "created_at", "updated_at")


@dataclass(frozen=True)
class Definition:
    segment_id: str
    name: str
    rule: Rule
    purpose: str | None
    version: int
    created_at: str
    updated_at: str

    def view(self) -> dict[str, Any]:
        """The public shape: ``{segment_id, name, rule, purpose, version, created_at, updated_at}``."""
        return {key: getattr(self, key) for key in VIEW}


def load_definitions(tx: Tx, segment_id: str | None = None) -> list[Definition]:
    where, params = ("WHERE segment_id = ?", [segment_id]) if segment_id else ("", [])
    rows = tx.fetchall(
        "SELECT segment_id, name, rule, purpose, version, created_at, updated_at "
        f"FROM {{segment_definitions}} {where} ORDER BY segment_id",
        params,
    )
    return [Definition(s, n, orjson.loads(r), p, int(v), c, u) for s, n, r, p, v, c, u in rows]


def list_definitions(tx: Tx) -> list[dict[str, Any]]:
    """Every segment definition, by id."""
    return [d.view() for d in load_definitions(tx)]


def get_definition(tx: Tx, segment_id: str) -> dict[str, Any] | None:
    found = load_definitions(tx, segment_id)
    return found[0].view() if found else None


def members(
    tx: Tx,
    segment_id: str,
    *,
    cursor: str | None = None,
    limit: int = 50,
    as_of: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Members ``{customer_id, since, position}`` by customer id; ``as_of`` reads the history.

    Membership as of T is the latest change (in log order) recorded at or before T.
    """
    after = ""
    if cursor:
        (after,) = decode_cursor(cursor)
    if as_of is None:
        rows = tx.fetchall(
            "SELECT customer_id, since, position FROM {segment_members} "
            "WHERE segment_id = ? AND customer_id > ? ORDER BY customer_id LIMIT ?",
            (segment_id, str(after), limit + 1),
        )
    else:
        rows = tx.fetchall(
            "SELECT c.customer_id, c.at, c.position FROM {segment_changes} c "
            "WHERE c.segment_id = ? AND c.customer_id > ? AND c.change = 'entered' "
            "AND c.position = (SELECT MAX(d.position) FROM {segment_changes} d WHERE d.segment_id "
            "= c.segment_id AND d.customer_id = c.customer_id AND d.at <= ?) "
            "ORDER BY c.customer_id LIMIT ?",
            (segment_id, str(after), utc_text(check_aware("as_of", as_of)), limit + 1),
        )
    items = [{"customer_id": c, "since": s, "position": p} for c, s, p in rows[:limit]]
    return items, encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None


def changes(
    tx: Tx, segment_id: str | None = None, after: Cursor = START, limit: int = 1000
) -> list[dict[str, Any]]:
    """Membership changes ``{position, segment_id, customer_id, change, at}`` after the cursor
    ``after``, in log order (one segment, or all)."""
    where = "(position, segment_id, customer_id) > (?, ?, ?)"
    params: list[Any] = list(after)
    if segment_id is not None:
        where += " AND segment_id = ?"
        params.append(segment_id)
    rows = tx.fetchall(
        "SELECT position, segment_id, customer_id, change, at FROM {segment_changes} "
        f"WHERE {where} ORDER BY position, segment_id, customer_id LIMIT ?",
        [*params, limit],
    )
    keys = ("position", "segment_id", "customer_id", "change", "at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def changes_at(tx: Tx, position: int) -> int:
    """How many membership changes the event at ``position`` caused."""
    row = tx.fetchone("SELECT COUNT(*) FROM {segment_changes} WHERE position = ?", (position,))
    return int(row[0]) if row else 0
