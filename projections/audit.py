"""Audit history: one append-only row per event, with field-level before → after diffs.

The diff is computed generically from the same profile fold the live profiles use (before and
after each event), so every change — profile fields, attributes, consents, stage, status,
merges — appears the way an auditor reads a profile. When a customer is erased, personal data
in that customer's earlier rows is blanked too (deterministically, so rebuilds agree).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from infra.envelope import Envelope
from projections import profile
from projections.framework import Projector
from projections.profiles import decode_cursor, encode_cursor
from projections.readstore import Tx

IGNORED = {"version", "position", "updated_at"}
PERSONAL = {"name", "email", "phone", "comment", "summary", "subject", "outcome"}
COLUMNS = (
    "position, customer_id, version, type, actor, correlation_id, causation_id, "
    "occurred_at, recorded_at, data, diff"
)


def utc(moment: datetime) -> str:
    """UTC, microseconds: stored and compared as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _flat(document: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if key in IGNORED:
            continue
        if isinstance(value, dict):
            for inner, item in value.items():
                flat[f"{key}.{inner}"] = item
        else:
            flat[key] = value
    return flat


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for every field that changed (one level of nesting)."""
    old, new = _flat(profile.render(before)), _flat(profile.render(after))
    return {
        k: [old.get(k), new.get(k)]
        for k in sorted(old.keys() | new.keys())
        if old.get(k) != new.get(k)
    }


def blank(document: Any) -> Any:
    """Personal values replaced by null, recursively (keys and structure stay)."""
    if isinstance(document, list):
        return [blank(item) for item in document]
    if not isinstance(document, dict):
        return document
    shown: dict[str, Any] = {}
    for key, value in document.items():
        if key == "attributes" and isinstance(value, dict):
            shown[key] = dict.fromkeys(value)
        elif key in PERSONAL or key.split(".")[0] in PERSONAL or key.startswith("attributes."):
            shown[key] = None
        else:
            shown[key] = blank(value)
    return shown


class AuditProjector(Projector):
    name = "audit"
    tables = ("audit_events", "audit_state")
    schema = (
        """CREATE TABLE IF NOT EXISTS {audit_events} (
            position BIGINT PRIMARY KEY, customer_id TEXT NOT NULL, version BIGINT NOT NULL,
            type TEXT NOT NULL, actor TEXT NOT NULL, correlation_id TEXT NOT NULL,
            causation_id TEXT, occurred_at TEXT NOT NULL, recorded_at TEXT NOT NULL,
            data TEXT NOT NULL, diff TEXT NOT NULL)""",
        "CREATE UNIQUE INDEX IF NOT EXISTS {audit_events}_cv_idx ON {audit_events} (customer_id, version)",
        "CREATE INDEX IF NOT EXISTS {audit_events}_actor_idx ON {audit_events} (actor, position)",
        "CREATE INDEX IF NOT EXISTS {audit_events}_type_idx ON {audit_events} (type, position)",
        "CREATE INDEX IF NOT EXISTS {audit_events}_time_idx ON {audit_events} (recorded_at)",
        "CREATE TABLE IF NOT EXISTS {audit_state} (customer_id TEXT PRIMARY KEY, state TEXT NOT NULL)",
    )

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        ids = sorted({str(e.customer_id) for e in envelopes})
        states: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = tx.fetchall(
                f"SELECT customer_id, state FROM {{audit_state}} WHERE customer_id IN ({marks})",
                chunk,
            )
            states.update({c: orjson.loads(s) for c, s in rows})
        rows_out, erased = [], []
        for e in envelopes:
            key = str(e.customer_id)
            before = states.get(key) or profile.empty(e.customer_id)
            after = copy.deepcopy(before)
            profile.apply(after, e)
            states[key] = after
            change = diff(before, after)
            data = e.data
            if e.type == "customer.erased":
                erased.append(key)
                change = blank(change)
            rows_out.append(
                (
                    e.position,
                    key,
                    e.version,
                    e.type,
                    e.actor,
                    e.correlation_id,
                    e.causation_id,
                    utc(e.occurred_at),
                    utc(e.recorded_at),
                    orjson.dumps(data).decode(),
                    orjson.dumps(change).decode(),
                )
            )
        tx.executemany(
            f"INSERT INTO {{audit_events}} ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows_out,
        )
        tx.executemany(
            "INSERT INTO {audit_state} (customer_id, state) VALUES (?, ?) "
            "ON CONFLICT (customer_id) DO UPDATE SET state = excluded.state",
            [(k, orjson.dumps(v).decode()) for k, v in sorted(states.items())],
        )
        for key in erased:
            self._blank_history(tx, key)

    @staticmethod
    def _blank_history(tx: Tx, customer_id: str) -> None:
        rows = tx.fetchall(
            "SELECT position, data, diff FROM {audit_events} WHERE customer_id = ?", (customer_id,)
        )
        tx.executemany(
            "UPDATE {audit_events} SET data = ?, diff = ? WHERE position = ?",
            [
                (
                    orjson.dumps(blank(orjson.loads(d))).decode(),
                    orjson.dumps(blank(orjson.loads(f))).decode(),
                    p,
                )
                for p, d, f in rows
            ],
        )


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = [c.strip() for c in COLUMNS.split(",")]
    doc = dict(zip(keys, row, strict=True))
    doc["data"], doc["diff"] = orjson.loads(doc["data"]), orjson.loads(doc["diff"])
    return doc


def search(
    tx: Tx,
    *,
    customer_id: UUID | None = None,
    actor: str | None = None,
    type: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], str | None]:
    """Audit rows matching every filter, in store order (``start <= recorded_at < end``)."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    for column, value in (
        ("customer_id", customer_id and str(customer_id)),
        ("actor", actor),
        ("type", type),
    ):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if start is not None:
        where.append("recorded_at >= ?")
        params.append(utc(start))
    if end is not None:
        where.append("recorded_at < ?")
        params.append(utc(end))
    if cursor:
        (after,) = decode_cursor(cursor)
        where.append("position > ?")
        params.append(int(after))
    rows = tx.fetchall(
        f"SELECT {COLUMNS} FROM {{audit_events}} WHERE {' AND '.join(where)} ORDER BY position LIMIT ?",
        [*params, limit + 1],
    )
    items = [_row(r) for r in rows[:limit]]
    return items, encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None


def export(
    tx: Tx, start: datetime | None, end: datetime | None, chunk: int = 1000
) -> Iterator[dict[str, Any]]:
    """Every audit row in the time range, in store order, read in chunks."""
    cursor: str | None = None
    while True:
        items, cursor = search(tx, start=start, end=end, cursor=cursor, limit=chunk)
        yield from items
        if cursor is None:
            return
