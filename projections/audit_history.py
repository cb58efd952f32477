"""Audit history read model: one append-only row per event, with field-level before → after diffs.

``audit_events`` keeps every event (position, customer, version, type, actor, correlation and
causation ids, occurred/recorded times, data) and its ``diff``: ``{field: [before, after]}``
for every field of the customer's profile that the event changed. Before and after come from
the same fold the live profiles use (:mod:`projections.profile_fold`), applied to the per-customer
state kept in ``audit_state``, so fields read as in a profile: ``name``, ``email``, ``phone``,
``attributes.<key>``, ``consents.<purpose>``, ``lifecycle_stage``, ``status``, ``merged_into``,
``tags``, ``purchases.count``, ``feedback.nps``…

When a customer is erased, each of that customer's rows becomes what a rebuild after the
erasure writes (:func:`erased_row`): the event's data as the shredded key leaves it
(:func:`infra.personal_data.shredded`), and the diff without personal fields (a fold of the
shredded events never sees a personal value, and nothing else in the fold depends on one).
Live and rebuilt rows are therefore identical, whenever the erasure was applied.
:func:`blank` masks personal values for readers without the ``pii`` permission.

The erasure also names the customers holding copies of the person's data (``copies_at``:
email/phone a merge moved, sealed with the person's key); their rows read those copies as a
rebuild now reads them (:func:`_drop_copies`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from domain import personal
from domain.events import PERSONAL_FIELDS, DuplicateAbsorbed
from infra.envelope import Envelope
from infra.personal_data import shredded
from infra.read_tx import Tx
from infra.sql_chunks import among
from projections import profile_fold
from projections.framework import Projector
from projections.profiles import decode_cursor, encode_cursor

# bookkeeping, and the fold's internals that a rendered profile leaves out
NOT_AUDITED = {"version", "position", "updated_at", "orders", "status_before_merge"}
_ABSENT = object()
COLUMNS = (
    "position",
    "customer_id",
    "version",
    "type",
    "actor",
    "correlation_id",
    "causation_id",
    "occurred_at",
    "recorded_at",
    "data",
    "diff",
)
SELECT = f"SELECT {', '.join(COLUMNS)} FROM {{audit_events}}"


def utc(moment: datetime) -> str:
    """UTC, microseconds: stored and compared as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _flat(key: str, value: Any) -> dict[str, Any]:
    """One profile field as audit fields: a dict is flattened one level (``attributes.city``)."""
    if isinstance(value, dict):
        return {f"{key}.{inner}": item for inner, item in value.items()}
    return {key: value}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for every audit field that differs between two profile
    states, fields sorted by name. Only top-level values that differ are flattened and
    compared field by field, so an event costs what it changed, not the profile's size."""
    changed: dict[str, list[Any]] = {}
    keys = [k for k, v in after.items() if before.get(k, _ABSENT) != v]
    keys += [k for k in before if k not in after]
    for key in keys:
        if key in NOT_AUDITED:
            continue
        old = _flat(key, before[key]) if key in before else {}
        new = _flat(key, after[key]) if key in after else {}
        for field in old.keys() | new.keys():
            if old.get(field) != new.get(field):
                changed[field] = [old.get(field), new.get(field)]
    return dict(sorted(changed.items()))


def blank(document: Any) -> Any:
    """Personal values (of every event's personal fields, and of the profile fields of the
    same names) replaced by null, recursively (keys and structure stay)."""
    return personal.blank(PERSONAL_FIELDS, document)


def erased_row(event_type: str, data: dict[str, Any], change: dict[str, Any]) -> tuple[str, str]:
    """``(data, diff)`` JSON of one row of an erased customer, exactly as a rebuild writes it."""
    kept = {
        field: values
        for field, values in change.items()
        if field.split(".")[0] not in PERSONAL_FIELDS
    }
    return orjson.dumps(shredded(event_type, data)).decode(), orjson.dumps(kept).decode()


class AuditHistoryProjector(Projector):
    """Appends one ``audit_events`` row per event; ``audit_state`` holds each profile fold."""

    name = "audit"
    schema_version = 2  # 2: diffs of external ids and registered_at (issue 14)
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
        states = _load(tx, sorted({e.customer_key for e in envelopes}))
        rows, touched, erased, copies = [], set(), [], []
        for e in envelopes:
            key = e.customer_key
            if (state := states.get(key)) is None:
                state = states[key] = profile_fold.empty(e.customer_id)
            # a deep copy of what diff compares (the fold works in place): only the fields
            # the event can change, so an event costs what it touches, not the whole profile
            fields = profile_fold.changed_fields(e)
            seen = state if fields is None else {k: state[k] for k in fields if k in state}
            before = orjson.loads(
                orjson.dumps({k: v for k, v in seen.items() if k not in NOT_AUDITED})
            )
            if not profile_fold.apply(state, e):
                continue  # redelivered: already recorded
            after = state if fields is None else {k: state[k] for k in fields if k in state}
            change = diff(before, after)
            if e.type == "customer.erased":
                erased.append(key)
                copies += [(key, holder) for holder in e.data.get("copies_at", [])]
            touched.add(key)
            rows.append(
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
                    orjson.dumps(e.data).decode(),
                    orjson.dumps(change).decode(),
                )
            )
        tx.insert("audit_events", COLUMNS, rows)  # new versions only: the framework checked
        tx.upsert(
            "audit_state",
            ("customer_id",),
            ("customer_id", "state"),
            [(k, orjson.dumps(states[k]).decode()) for k in sorted(touched)],
        )
        for key in erased:
            _erase_history(tx, key)
        for owner, holder in copies:
            _drop_copies(tx, owner, holder)


def _load(tx: Tx, ids: list[str]) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    for condition, params in among(tx, "customer_id", ids):
        rows = tx.fetchall(
            f"SELECT customer_id, state FROM {{audit_state}} WHERE {condition}", params
        )
        states.update({c: orjson.loads(s) for c, s in rows})
    return states


def _erase_history(tx: Tx, customer_id: str) -> None:
    rows = tx.fetchall(
        "SELECT position, type, data, diff FROM {audit_events} WHERE customer_id = ?",
        (customer_id,),
    )
    tx.executemany(
        "UPDATE {audit_events} SET data = ?, diff = ? WHERE position = ?",
        [
            (*erased_row(kind, orjson.loads(data), orjson.loads(change)), position)
            for position, kind, data, change in rows
        ],
    )


MOVED = tuple(DuplicateAbsorbed.PERSONAL)  # what merges move, sealed with their owner's key


def _drop_copies(tx: Tx, owner: str, holder: str) -> None:
    """``owner`` was erased: in ``holder``'s rows, the email/phone a merge moved from them read
    null (as their shredded key now opens them), every row's email/phone diff is refolded from
    the rows (what a rebuild gives), and so is the holder's fold in ``audit_state`` (which later
    rows start from). An erased holder's rows are blank already."""
    found = tx.fetchone("SELECT state FROM {audit_state} WHERE customer_id = ?", (holder,))
    state = orjson.loads(found[0]) if found else {}
    if state.get("status", "erased") == "erased":
        return
    rows = tx.fetchall(f"{SELECT} WHERE customer_id = ? ORDER BY version", (holder,))
    items = [_item(row) for row in rows]
    if not any(item["data"].get("data_owner") == owner for item in items):
        return
    fold, changed = profile_fold.empty(UUID(holder)), []
    for item in items:
        data = item["data"]
        if data.get("data_owner") == owner:
            data = {**data, **dict.fromkeys(MOVED)}
        before = orjson.loads(orjson.dumps(fold))
        profile_fold.apply(fold, _envelope(item, data))
        moved = {k: v for k, v in diff(before, fold).items() if k in MOVED}
        kept = {k: v for k, v in item["diff"].items() if k not in MOVED}
        new_diff = dict(sorted((kept | moved).items()))
        if (data, new_diff) != (item["data"], item["diff"]):
            row = (orjson.dumps(data).decode(), orjson.dumps(new_diff).decode(), item["position"])
            changed.append(row)
    tx.executemany("UPDATE {audit_events} SET data = ?, diff = ? WHERE position = ?", changed)
    state |= {field: fold.get(field) for field in MOVED}
    tx.execute(
        "UPDATE {audit_state} SET state = ? WHERE customer_id = ?",
        (orjson.dumps(state).decode(), holder),
    )


def _envelope(item: dict[str, Any], data: dict[str, Any]) -> Envelope:
    """An audit row as the envelope it was made from (times as stored: UTC)."""
    return Envelope(
        type=item["type"],
        schema_version=1,
        customer_id=UUID(item["customer_id"]),
        version=int(item["version"]),
        position=int(item["position"]),
        occurred_at=datetime.fromisoformat(item["occurred_at"]),
        recorded_at=datetime.fromisoformat(item["recorded_at"]),
        actor=item["actor"],
        correlation_id=item["correlation_id"],
        causation_id=item["causation_id"],
        data=data,
    )


# --------------------------------------------------------------------------- queries


def _item(row: tuple[Any, ...]) -> dict[str, Any]:
    item = dict(zip(COLUMNS, row, strict=True))
    item["data"], item["diff"] = orjson.loads(item["data"]), orjson.loads(item["diff"])
    return item


def search(
    tx: Tx,
    *,
    customer_id: UUID | None = None,
    actor: str | None = None,
    type: str | tuple[str, ...] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], str | None]:
    """Audit rows matching every filter given, in store order, ``limit`` per page.

    ``start <= recorded_at < end``; ``cursor`` is the previous page's ``next_cursor`` (a
    malformed one raises ``ValueError``).
    """
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    for column, value in (
        ("customer_id", customer_id and str(customer_id)),
        ("actor", actor),
    ):
        if value:  # an empty filter is no filter
            where.append(f"{column} = ?")
            params.append(value)
    if type:
        types = (type,) if isinstance(type, str) else type
        where.append(f"type IN ({', '.join('?' * len(types))})")
        params.extend(types)
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
        f"{SELECT} WHERE {' AND '.join(where)} ORDER BY position LIMIT ?", [*params, limit + 1]
    )
    next_cursor = encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None
    return [_item(r) for r in rows[:limit]], next_cursor


def history(
    tx: Tx, customer_id: UUID, cursor: str | None = None, limit: int = 100
) -> tuple[list[dict[str, Any]], str | None]:
    """One customer's audit trail in version order, ``limit`` per page."""
    return search(tx, customer_id=customer_id, cursor=cursor, limit=limit)


CONSENT_TYPES = ("customer.consent_granted", "customer.consent_withdrawn")


def consent_history(
    tx: Tx, customer_id: UUID, cursor: str | None = None, limit: int = 100
) -> tuple[list[dict[str, Any]], str | None]:
    """Every consent decision of a customer: purpose, granted, source, who, when, why."""
    rows, next_cursor = search(
        tx, customer_id=customer_id, type=CONSENT_TYPES, cursor=cursor, limit=limit
    )
    return [
        {
            "purpose": row["data"]["purpose"],
            "granted": row["type"] == CONSENT_TYPES[0],
            "source": row["data"].get("source"),
            "actor": row["actor"],
            "occurred_at": row["occurred_at"],
            "recorded_at": row["recorded_at"],
            "correlation_id": row["correlation_id"],
            "version": row["version"],
        }
        for row in rows
    ], next_cursor
