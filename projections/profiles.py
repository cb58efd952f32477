"""Profiles read model: the current profile of every customer, searchable and pageable.

``profile_tags`` and ``profile_external_ids`` index the tags and external ids of each profile
(a row per customer: while a projection holds a customer back, two customers may hold one
external id for a moment, so lookups prefer the live holder; :func:`find_by_external`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import orjson

from infra.envelope import Envelope
from infra.read_tx import LIKE_ESCAPE, Tx, like_prefix
from infra.sql_chunks import among
from projections import profile_fold
from projections.framework import Projector


class ProfilesProjector(Projector):
    """Keeps ``profiles`` (state JSON + searchable columns), ``profile_tags`` and
    ``profile_external_ids``. Version 2 added external ids and ``registered_at``."""

    name = "profiles"
    schema_version = 2
    tables = ("profiles", "profile_tags", "profile_external_ids")
    schema = (
        """CREATE TABLE IF NOT EXISTS {profiles} (
            customer_id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            name_key TEXT,
            email TEXT,
            phone TEXT,
            lifecycle_stage TEXT,
            status TEXT NOT NULL,
            version BIGINT NOT NULL,
            position BIGINT NOT NULL,
            created_at TEXT,
            updated_at TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS {profiles}_name_idx ON {profiles} (name_key, customer_id)",
        "CREATE INDEX IF NOT EXISTS {profiles}_email_idx ON {profiles} (email)",
        "CREATE INDEX IF NOT EXISTS {profiles}_phone_idx ON {profiles} (phone)",
        "CREATE INDEX IF NOT EXISTS {profiles}_stage_idx ON {profiles} (lifecycle_stage, customer_id)",
        """CREATE TABLE IF NOT EXISTS {profile_tags} (
            tag TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            PRIMARY KEY (tag, customer_id))""",
        """CREATE TABLE IF NOT EXISTS {profile_external_ids} (
            system TEXT NOT NULL,
            external_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            PRIMARY KEY (system, external_id, customer_id))""",
    )

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        states = load_states(tx, {e.customer_key for e in envelopes})
        indexed = _reindexed(envelopes)
        before = {c: (_tags(states[c]), _external(states[c])) for c in indexed if c in states}
        for envelope in envelopes:
            if (state := states.get(envelope.customer_key)) is None:
                state = states[envelope.customer_key] = profile_fold.empty(envelope.customer_id)
            profile_fold.apply(state, envelope)
        tx.upsert("profiles", ("customer_id",), _COLUMNS, [_row(c, s) for c, s in states.items()])
        for index, (table, columns, rows) in enumerate(
            (("profile_tags", ("tag",), _tags), ("profile_external_ids", _EXTERNAL, _external))
        ):
            removed, added = [], []
            for key in indexed:
                old = before.get(key, (set(), set()))[index]
                new = rows(states[key])
                removed += [(*row, key) for row in sorted(old - new)]
                added += [(*row, key) for row in sorted(new - old)]
            keys = (*columns, "customer_id")
            tx.delete(table, keys, removed)
            tx.upsert(table, keys, keys, added, replace=False)


def _reindexed(envelopes: Sequence[Envelope]) -> list[str]:
    """The customers (ids as text) whose tags or external ids some of ``envelopes`` may change (in order of
    first appearance): only their index rows are compared and rewritten."""
    found: dict[str, None] = {}
    for envelope in envelopes:
        fields = profile_fold.changed_fields(envelope)
        if fields is None or "tags" in fields or "external_ids" in fields:
            found[envelope.customer_key] = None
    return list(found)


_EXTERNAL = ("system", "external_id")
_COLUMNS = (
    "customer_id",
    "state",
    "name_key",
    "email",
    "phone",
    "lifecycle_stage",
    "status",
    "version",
    "position",
    "created_at",
    "updated_at",
)


def _tags(state: dict[str, Any]) -> set[tuple[str, ...]]:
    return {(tag,) for tag in state.get("tags", [])}


def _external(state: dict[str, Any]) -> set[tuple[str, ...]]:
    return set(state.get("external_ids", {}).items())


def _row(customer_id: str, state: dict[str, Any]) -> tuple[Any, ...]:
    name = state.get("name")
    return (
        customer_id,
        orjson.dumps(state).decode(),
        name.casefold() if name else None,
        state.get("email"),
        state.get("phone"),
        state.get("lifecycle_stage"),
        state.get("status", "active"),
        state["version"],
        state.get("position", 0),
        state.get("created_at"),
        state["updated_at"],
    )


def load_states(tx: Tx, customer_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Current profile states of some customers, by id as text (absent ones are missing)."""
    states: dict[str, dict[str, Any]] = {}
    for condition, params in among(tx, "customer_id", sorted(customer_ids)):
        rows = tx.fetchall(f"SELECT customer_id, state FROM {{profiles}} WHERE {condition}", params)
        states.update({cid: orjson.loads(state) for cid, state in rows})
    return states


# --------------------------------------------------------------------------- queries


def get_profile(tx: Tx, customer_id: UUID) -> dict[str, Any] | None:
    """The live profile of one customer, in the public shape, or None."""
    row = tx.fetchone("SELECT state FROM {profiles} WHERE customer_id = ?", (str(customer_id),))
    return None if row is None else profile_fold.render(orjson.loads(row[0]))


def final_survivor(tx: Tx, survivor_id: UUID, hops: int = 1000) -> UUID:
    """The end of a merge chain starting at ``survivor_id`` (A → B → C: C for B)."""
    for _ in range(hops):  # merges never form a cycle; the bound only guards bad data
        row = tx.fetchone(
            "SELECT status, state FROM {profiles} WHERE customer_id = ?", (str(survivor_id),)
        )
        if row is None or row[0] != "merged":
            break
        survivor_id = UUID(orjson.loads(row[1])["merged_into"])
    return survivor_id


def find_by_external(tx: Tx, system: str, external_id: str) -> dict[str, Any] | None:
    """The profile of the customer holding an external id (canonical forms), live holders
    first; None if nobody holds it. A merged holder's profile is returned as is: the caller
    follows ``merged_into`` to the survivor who answers for it."""
    rows = tx.fetchall(
        "SELECT p.status, p.state FROM {profile_external_ids} x "
        "JOIN {profiles} p ON p.customer_id = x.customer_id "
        "WHERE x.system = ? AND x.external_id = ? ORDER BY p.customer_id",
        (system, external_id),
    )
    rank = {"active": 0, "churned": 0, "merged": 1}
    rows.sort(key=lambda row: rank.get(row[0], 2))
    return profile_fold.render(orjson.loads(rows[0][1])) if rows else None


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    """Opaque cursors are base64url JSON; anything else is a ``ValueError``."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        value = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, orjson.JSONDecodeError):
        raise ValueError("malformed cursor") from None
    if not isinstance(value, list):
        raise ValueError("malformed cursor")
    return value


def search_profiles(
    tx: Tx,
    *,
    q: str | None = None,
    tag: str | None = None,
    stage: str | None = None,
    status: str | None = None,
    segment: str | None = None,
    external: tuple[str, str | None] | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], str | None]:
    """Profiles matching all filters, ordered by customer id, ``limit`` per page.

    ``q`` matches a prefix of the name (case-insensitive), email or phone, literally: ``%``,
    ``_`` and ``\\`` in it are characters to find, not wildcards. Without ``status``, only live
    customers (active or churned) are listed. ``external`` is ``(system, id)``: those holding
    that external id, or ``(system, None)``: those holding an id of that system (canonical
    forms). ``cursor`` is the opaque ``next_cursor`` of the previous page (a malformed one
    raises ``ValueError``).
    """
    where, params = ["1 = 1"], []
    if q:
        text = q.strip()
        folded = like_prefix(text.casefold())
        where.append(
            f"(name_key LIKE ? {LIKE_ESCAPE} OR email LIKE ? {LIKE_ESCAPE} OR phone LIKE ? {LIKE_ESCAPE})"
        )
        params += [folded, folded, like_prefix(text)]
    if tag:
        where.append("customer_id IN (SELECT customer_id FROM {profile_tags} WHERE tag = ?)")
        params.append(tag)
    if external:
        system, external_id = external
        inner = "SELECT customer_id FROM {profile_external_ids} WHERE system = ?"
        where.append(f"customer_id IN ({inner}{' AND external_id = ?' if external_id else ''})")
        params += [system] if external_id is None else [system, external_id]
    if segment:  # the segments read model's membership table
        where.append(
            "customer_id IN (SELECT customer_id FROM segment_members WHERE segment_id = ?)"
        )
        params.append(segment)
    if stage:
        where.append("lifecycle_stage = ?")
        params.append(stage)
    if status:
        where.append("status = ?")
        params.append(status)
    else:  # merged and erased records are gone unless asked for by status
        where.append("status IN ('active', 'churned')")
    if cursor:
        (after,) = decode_cursor(cursor)
        where.append("customer_id > ?")
        params.append(str(after))
    rows = tx.fetchall(
        f"SELECT customer_id, state FROM {{profiles}} WHERE {' AND '.join(where)} "
        "ORDER BY customer_id LIMIT ?",
        [*params, limit + 1],
    )
    items = [profile_fold.render(orjson.loads(state)) for _, state in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None
    return items, next_cursor
