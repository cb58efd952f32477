"""Duplicates read model: what duplicate detection compares, for every live customer.

``duplicate_records`` keeps, per customer, the fields duplicate detection reads (name,
email, phone, address/city/postal code, external ids), whether the customer is live (not
merged away, not erased) and the position of its newest change; ``duplicate_keys`` indexes the
live ones by blocking key (:func:`domain.duplicates.blocking.exact_keys`), so a registration is
checked against the base with a few index lookups. ``duplicate_dismissals`` holds the pairs a
person decided are not duplicates, with the fingerprint of both records at that moment
(``duplicates.dismissed``, :mod:`domain.duplicate_review`).

A pure fold of each customer's events (no clock, no other table), so live equals a rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson

from domain.duplicate_review import EVENT_TYPES as REVIEW_EVENTS
from domain.duplicates.blocking import exact_keys
from domain.duplicates.records import match_record
from domain.events import moved_fields, patch_map
from infra.envelope import Envelope
from infra.read_tx import Tx
from infra.sql_chunks import among
from projections.framework import Projector

ADDRESS_ATTRIBUTES = ("address", "city", "postal_code")
_GONE = frozenset({"merged", "erased"})


def _fold(state: dict[str, Any], e: Envelope) -> None:
    data = e.data
    if e.type == "customer.registered":
        state.update(
            name=data["name"],
            email=data["email"],
            phone=data["phone"],
            attributes={k: v for k, v in data["attributes"].items() if k in ADDRESS_ATTRIBUTES},
            external_ids=dict(data.get("external_ids") or {}),
            status="active",
        )
    elif e.type == "customer.profile_updated":
        state.update({k: v for k, v in data["changes"].items() if k in ("name", "email", "phone")})
        patch_map(
            state["attributes"],
            {k: v for k, v in data["attributes"].items() if k in ADDRESS_ATTRIBUTES},
        )
        patch_map(state["external_ids"], data.get("external_ids") or {})
    elif e.type == "customer.merged_into":
        state["status"] = "merged"
    elif e.type == "customer.unmerged" and data["role"] == "duplicate":
        state["status"] = "active"
    elif e.type in ("customer.duplicate_absorbed", "customer.unmerged"):
        absorbed = e.type == "customer.duplicate_absorbed"
        for field in moved_fields(data):
            state[field] = data[field] if absorbed else None
    elif e.type == "customer.erased":
        state.update(
            status="erased", name=None, email=None, phone=None, attributes={}, external_ids={}
        )


HANDLED = frozenset(
    {
        "customer.registered",
        "customer.profile_updated",
        "customer.merged_into",
        "customer.unmerged",
        "customer.duplicate_absorbed",
        "customer.erased",
    }
)


class DuplicatesProjector(Projector):
    """Keeps ``duplicate_records``, ``duplicate_keys`` and ``duplicate_dismissals``."""

    name = "duplicates"
    log_order = True  # dismissals are not customer events: fed from the store's log
    crosses = HANDLED  # a customer's candidates are scored against others' rows
    tables = ("duplicate_records", "duplicate_keys", "duplicate_dismissals")
    handles: ClassVar[frozenset[str] | None] = HANDLED | frozenset(REVIEW_EVENTS)
    schema = (
        """CREATE TABLE IF NOT EXISTS {duplicate_records} (
            customer_id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            live INTEGER NOT NULL,
            position BIGINT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS {duplicate_records}_position_idx ON {duplicate_records} (position)",
        """CREATE TABLE IF NOT EXISTS {duplicate_keys} (
            key TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            PRIMARY KEY (key, customer_id))""",
        """CREATE TABLE IF NOT EXISTS {duplicate_dismissals} (
            pair_id TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            position BIGINT NOT NULL)""",
    )

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        customers = [e for e in envelopes if e.type in HANDLED]
        for e in envelopes:
            if e.type in REVIEW_EVENTS:
                tx.execute(
                    "INSERT INTO {duplicate_dismissals} (pair_id, fingerprint, position) VALUES (?, ?, ?) "
                    "ON CONFLICT (pair_id) DO UPDATE SET fingerprint = excluded.fingerprint, "
                    "position = excluded.position",
                    (e.data["pair_id"], e.data["fingerprint"], e.position),
                )
        if not customers:
            return
        states = _load(tx, sorted({str(e.customer_id) for e in customers}))
        before = {cid: _keys(cid, state) for cid, state in states.items()}
        positions: dict[str, int] = {}
        for e in customers:
            cid = str(e.customer_id)
            state = states.setdefault(
                cid, {"attributes": {}, "external_ids": {}, "status": "active"}
            )
            _fold(state, e)
            positions[cid] = e.position
        records, removed, added = [], [], []
        for cid, position in sorted(positions.items()):
            state = states[cid]
            live = int(state["status"] not in _GONE)
            records.append((cid, orjson.dumps(state).decode(), live, position))
            old, new = before.get(cid, set()), _keys(cid, state)
            removed += [(key, cid) for key in sorted(old - new)]
            added += [(key, cid) for key in sorted(new - old)]
        tx.upsert(
            "duplicate_records",
            ("customer_id",),
            ("customer_id", "state", "live", "position"),
            records,
        )
        tx.delete("duplicate_keys", ("key", "customer_id"), removed)
        tx.upsert(
            "duplicate_keys", ("key", "customer_id"), ("key", "customer_id"), added, replace=False
        )


def _keys(customer_id: str, state: dict[str, Any]) -> set[str]:
    if state.get("status") in _GONE or not state.get("name"):
        return set()
    return exact_keys(match_record(customer_id, state))


def _load(tx: Tx, customers: list[str]) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    for condition, params in among(tx, "customer_id", customers):
        rows = tx.fetchall(
            f"SELECT customer_id, state FROM {{duplicate_records}} WHERE {condition}", params
        )
        states.update({cid: orjson.loads(state) for cid, state in rows})
    return states
