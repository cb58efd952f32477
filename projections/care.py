"""The care agenda read model: each live customer's care facts, and the agenda they make.

``care_customers`` holds one row per customer who is neither erased nor gone: their status and
the facts :func:`domain.care.items` decides from (stage, tier, attributes, consents, the
registration, the latest contact by business time and whether it was a complaint, when they
entered ``at_risk``), folded from their events in version order, so the table is a pure
function of the log (live equals a rebuild). Nothing here reads a clock: the agenda of a day
(:func:`agenda`) is computed when asked, from these facts, the ``care`` policy version in
force on that day and the day itself. An erasure deletes the row (its attributes are
personal data); a merged duplicate keeps its row with status ``merged`` (an unmerge gives it
back) and has no items.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson

from domain.care import REASONS, CarePolicy, Facts, Item, items
from domain.events import patch_map
from domain.values import LifecycleStage, utc_text
from infra.envelope import Envelope
from infra.read_tx import Tx
from infra.sql_chunks import among
from projections.framework import Projector
from projections.profiles import decode_cursor, encode_cursor

CHUNK = 500
AT_RISK = LifecycleStage.AT_RISK.value


def _registered(state: dict[str, Any], e: Envelope) -> None:
    stage = e.data["lifecycle_stage"]
    state.update(
        status="active",
        stage=stage,
        tier=None,
        attributes=dict(e.data["attributes"]),
        consents={},
        registered_at=e.occurred_text,
        last_contact_at=None,
        complaint_at=None,
        at_risk_at=e.occurred_text if stage == AT_RISK else None,
    )


def _contacted(state: dict[str, Any], e: Envelope) -> None:
    when = e.occurred_text
    last = state["last_contact_at"]
    if last is None or datetime.fromisoformat(last) <= e.occurred_at:
        state["last_contact_at"] = when
        state["complaint_at"] = when if e.data["kind"] == "complaint" else None


def _enter(state: dict[str, Any], stage: str, at: datetime) -> None:
    """Move to ``stage``; entering ``at_risk`` (from another stage) is remembered."""
    if stage != AT_RISK:
        state["at_risk_at"] = None
    elif state["stage"] != AT_RISK:
        state["at_risk_at"] = at.isoformat()
    state["stage"] = stage


def _status(status: str, stage: str) -> Any:
    def apply(state: dict[str, Any], e: Envelope) -> None:
        state["status"] = status
        _enter(state, stage, e.occurred_at)

    return apply


def _merged_into(state: dict[str, Any], _: Envelope) -> None:
    state["status_before_merge"], state["status"] = state["status"], "merged"


def _unmerged(state: dict[str, Any], e: Envelope) -> None:
    if e.data["role"] == "duplicate":
        state["status"] = state.pop("status_before_merge", "active")


def _consent(granted: bool) -> Any:
    return lambda state, e: state["consents"].update({e.data["purpose"]: granted})


_APPLY: dict[str, Any] = {
    "customer.registered": _registered,
    "customer.profile_updated": lambda s, e: patch_map(s["attributes"], e.data["attributes"]),
    "customer.contacted": _contacted,
    "customer.consent_granted": _consent(True),
    "customer.consent_withdrawn": _consent(False),
    "customer.lifecycle_stage_changed": lambda s, e: _enter(s, e.data["stage"], e.occurred_at),
    "customer.churned": _status("churned", LifecycleStage.CHURNED.value),
    "customer.reactivated": _status("active", LifecycleStage.ACTIVE.value),
    "customer.merged_into": _merged_into,
    "customer.unmerged": _unmerged,
    "customer.tier_changed": lambda s, e: s.update(tier=e.data["tier"]),
}
ERASED = "customer.erased"
REGISTERED = "customer.registered"


def fold(state: dict[str, Any] | None, envelope: Envelope) -> dict[str, Any] | None:
    """The care facts after ``envelope`` (None: no customer, or erased); in place."""
    if envelope.type == ERASED or (state is None and envelope.type != REGISTERED):
        return None
    apply = _APPLY.get(envelope.type)
    if state is None:
        state = {}
    if apply is not None:
        apply(state, envelope)
    return state


class CareProjector(Projector):
    """Keeps each customer's care facts (``care_customers``); see the module docstring."""

    name = "care"
    handles = frozenset({*_APPLY, ERASED})  # registration included
    tables = ("care_customers",)
    schema = (
        """CREATE TABLE IF NOT EXISTS {care_customers} (
            customer_id TEXT PRIMARY KEY, status TEXT NOT NULL, state TEXT NOT NULL)""",
    )

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        ids = sorted({e.customer_key for e in envelopes})
        states = _load(tx, ids)
        erased: set[str] = set()
        for envelope in envelopes:
            customer = envelope.customer_key
            state = fold(states.pop(customer, None), envelope)
            if state is not None:
                states[customer] = state
            elif envelope.type == ERASED:
                erased.add(customer)
        tx.delete("care_customers", ("customer_id",), [(c,) for c in sorted(erased)])
        tx.upsert(
            "care_customers",
            ("customer_id",),
            ("customer_id", "status", "state"),
            [(c, s["status"], orjson.dumps(s).decode()) for c, s in sorted(states.items())],
        )


def _load(tx: Tx, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for condition, params in among(tx, "customer_id", customer_ids):
        rows = tx.fetchall(
            f"SELECT customer_id, state FROM {{care_customers}} WHERE {condition}", params
        )
        found.update({customer: orjson.loads(state) for customer, state in rows})
    return found


def facts_of(state: dict[str, Any]) -> Facts:
    """The stored state as :class:`domain.care.Facts`."""

    def instant(key: str) -> datetime | None:
        value = state.get(key)
        return None if value is None else datetime.fromisoformat(value)

    registered = instant("registered_at")
    assert registered is not None
    return Facts(
        state["status"],
        state["stage"],
        state["tier"],
        state["attributes"],
        state["consents"],
        registered,
        instant("last_contact_at"),
        instant("complaint_at"),
        instant("at_risk_at"),
    )


@dataclass(frozen=True)
class Entry:
    """One line of the agenda."""

    customer_id: str
    facts: Facts
    item: Item

    def view(self, policy: CarePolicy) -> dict[str, Any]:
        """``{customer_id, reason, due_at, owner, lifecycle_stage, tier, detail}``."""
        return {
            "customer_id": self.customer_id,
            "reason": self.item.reason,
            "due_at": utc_text(self.item.due_at),
            "owner": self.facts.owner(policy),
            "lifecycle_stage": self.facts.stage,
            "tier": self.facts.tier,
            "detail": dict(self.item.detail),
        }


def _live(tx: Tx, after: str) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Live customers' states after ``after``, by customer id, in chunks."""
    while rows := tx.fetchall(
        "SELECT customer_id, state FROM {care_customers} WHERE customer_id >= ? "
        "AND status IN ('active', 'churned') ORDER BY customer_id LIMIT ?",
        (after, CHUNK),
    ):
        yield [(customer, orjson.loads(state)) for customer, state in rows]
        after = rows[-1][0] + "\x00"


def _memberships(tx: Tx, customer_ids: Sequence[str]) -> dict[str, set[str]]:
    among, params = tx.any_of("customer_id", customer_ids)
    rows = tx.fetchall(
        f"SELECT customer_id, segment_id FROM {{segment_members}} WHERE {among}", params
    )
    found: dict[str, set[str]] = {}
    for customer, segment in rows:
        found.setdefault(customer, set()).add(segment)
    return found


def agenda(
    tx: Tx,
    policy: CarePolicy,
    day: date,
    *,
    owner: str | None = None,
    reason: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[Entry], str | None]:
    """The agenda of business day ``day`` under ``policy``: one entry per (customer, reason)
    due, by customer id then reason (:data:`domain.care.REASONS` order), only the owner's or
    the reason's if given; at most ``limit``, and the cursor of the next page (None at the
    end). A cursor not issued here is a ``ValueError``."""
    start, done = "", -1
    if cursor is not None:
        parts = decode_cursor(cursor)
        if len(parts) != 2 or not isinstance(parts[0], str) or parts[1] not in REASONS:
            raise ValueError("malformed cursor")
        start, done = parts[0], REASONS.index(parts[1])
    by_segment = bool(policy.follow_up.by_segment)
    page: list[Entry] = []
    for rows in _live(tx, start):
        segments = _memberships(tx, [c for c, _ in rows]) if by_segment else {}
        for customer, state in rows:
            facts = facts_of(state)
            if owner is not None and facts.owner(policy) != owner:
                continue
            for item in items(facts, policy, day, segments.get(customer, ())):
                if reason is not None and item.reason != reason:
                    continue
                if customer == start and REASONS.index(item.reason) <= done:
                    continue
                if len(page) == limit:
                    last = page[-1]
                    return page, encode_cursor(last.customer_id, last.item.reason)
                page.append(Entry(customer, facts, item))
    return page, None


def with_care(
    state: Mapping[str, Any], policy: CarePolicy | None, now: datetime
) -> Mapping[str, Any]:
    """A segments profile fold with ``care.reasons`` added (for rules on it): the reasons the
    customer is on the care agenda of ``now``'s day under ``policy`` (the default before the
    first version; ``follow_up.by_segment`` does not apply here: segments cannot depend on
    their own memberships). Unchanged without care facts."""
    facts = state.get("care_facts")
    if facts is None:
        return state
    found = items(facts_of(facts), policy or CarePolicy(), now.astimezone(UTC).date())
    return {**state, "care": {"reasons": [item.reason for item in found]}}
