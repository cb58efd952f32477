"""Segments read model: rule-defined groups of customers with their history, decided from the log.

Membership depends on facts across customers (which definitions are in force, when refreshes
happen, RFM ranks over everyone), so the projector is ``log_order``: in every mode it is fed
the store's notification log in global order, and a rebuild replays that log in the same
order. Every decision is made from events — never from a clock — so a rebuild reproduces the
live tables row for row:

* ``segment.defined`` / ``segment.redefined`` (:class:`domain.segment.Segment`) set the row in
  ``segment_definitions`` and decide that segment for every customer at the event's time;
* a customer event updates the customer's profile fold (``segment_state``) and decides every
  segment for them at its ``recorded_at``;
* ``segments.refreshed`` (:class:`domain.segment.Refresh`) ranks RFM scores over all live
  customers (``segment_rfm``, when a segment reads them; events use them until the next
  refresh) and decides time-relative and RFM segments for everyone at its ``occurred_at``;
* ``model.fitted`` (:mod:`domain.churn_model`) keeps the churn model's newest fit
  (``segment_churn_model``) and decides the segments reading ``churn_risk.*`` for everyone at
  its ``as_of``; customer events use that fit until the next (:mod:`projections.churn`);
* ``customer.erased`` deletes the customer's membership history and records ``exited`` for
  every segment: that history was decided partly from personal data that a rebuild can no
  longer read, so none of it may outlive the erasure. The same goes for every customer
  holding copies of the person's data (``copies_at``: what a merge moved onto a survivor,
  decided from while live, read as shredded by a rebuild): their history is deleted too and
  every segment decided afresh at the erasure, one ``entered`` or ``exited`` row each.

Each flip is a row of ``segment_changes`` keyed by (position of the event that caused it,
segment, customer), and updates ``segment_members``. The key orders changes as the log does;
it is also the membership publisher's cursor, which therefore survives rebuilds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from domain import churn_model, policy, segment
from domain.care import POLICY_NAME as CARE
from domain.care import CarePolicy
from domain.churn_model import FittedVersion
from domain.events import EVENT_TYPES
from domain.segment_evaluation import matches
from domain.segment_rules import (
    MEMBER_STATUSES,
    is_time_relative,
    uses_care,
    uses_churn_risk,
    uses_recommendations,
    uses_rfm,
)
from domain.values import utc_text
from infra.envelope import Envelope
from infra.read_tx import Tx
from projections import profile_fold, rfm
from projections.care import fold as fold_care
from projections.care import with_care
from projections.churn import (
    FITS_SCHEMA,
    keep_fit,
    keep_value_cuts,
    load_fit,
    load_value_cuts,
    value_cuts,
    with_risk,
)
from projections.framework import MERGES, Projector
from projections.segment_queries import Definition, load_definitions
from projections.segment_recommendations import SCHEMA as RECS_SCHEMA
from projections.segment_recommendations import fold_skus, keep_top3, load_top3, with_top3
from projections.segment_rows import Member, all_states, load_members, load_scores, load_states

SEGMENT_EVENTS = frozenset(segment.EVENT_TYPES)
POLICY_EVENTS = frozenset(cls.TYPE for cls in policy.EVENT_CLASSES)
# not customer events: applied one by one
OWN_EVENTS = SEGMENT_EVENTS | churn_model.EVENT_TYPES | POLICY_EVENTS
ERASED = "customer.erased"
CareVersions = list[tuple[datetime, CarePolicy]]  # (effective at, document), oldest first


class SegmentsProjector(Projector):
    """Keeps segment definitions, membership and its history; see the module docstring."""

    name = "segments"
    # 4: churn_risk fields from the churn model's fits; 5: care.reasons; 6: value.high_value;
    # 7: recommendations.top3
    schema_version = 7
    log_order = True
    crosses = MERGES  # (a merged duplicate's baskets count for the survivor's ranking)
    handles = frozenset(EVENT_TYPES) | OWN_EVENTS
    tables = (
        "segment_definitions",
        "segment_state",
        "segment_members",
        "segment_changes",
        "segment_rfm",
        "segment_churn_model",
        "segment_care_policy",
        "segment_recs",
    )
    schema = (
        """CREATE TABLE IF NOT EXISTS {segment_definitions} (
            segment_id TEXT PRIMARY KEY, name TEXT NOT NULL, rule TEXT NOT NULL, purpose TEXT,
            version INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            position BIGINT NOT NULL)""",
        "CREATE TABLE IF NOT EXISTS {segment_state} (customer_id TEXT PRIMARY KEY, state TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS {segment_members} (
            segment_id TEXT NOT NULL, customer_id TEXT NOT NULL, since TEXT NOT NULL,
            position BIGINT NOT NULL, PRIMARY KEY (segment_id, customer_id))""",
        "CREATE INDEX IF NOT EXISTS {segment_members}_customer_idx ON {segment_members} (customer_id)",
        """CREATE TABLE IF NOT EXISTS {segment_changes} (
            position BIGINT NOT NULL, segment_id TEXT NOT NULL, customer_id TEXT NOT NULL,
            change TEXT NOT NULL, at TEXT NOT NULL,
            PRIMARY KEY (position, segment_id, customer_id))""",
        "CREATE INDEX IF NOT EXISTS {segment_changes}_member_idx "
        "ON {segment_changes} (segment_id, customer_id, position)",
        "CREATE INDEX IF NOT EXISTS {segment_changes}_customer_idx ON {segment_changes} (customer_id)",
        "CREATE TABLE IF NOT EXISTS {segment_rfm} (customer_id TEXT PRIMARY KEY, scores TEXT NOT NULL)",
        FITS_SCHEMA,
        """CREATE TABLE IF NOT EXISTS {segment_care_policy} (
            version INTEGER PRIMARY KEY, effective_at TEXT NOT NULL, document TEXT NOT NULL)""",
        RECS_SCHEMA,
    )

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        """Customer events in runs (rows loaded and written once per run); each segment event
        on its own, between them, as it stands in the log."""
        run: list[Envelope] = []
        for envelope in envelopes:
            if envelope.type not in OWN_EVENTS:
                run.append(envelope)
                continue
            _customer_events(tx, run)
            run = []
            if envelope.type == segment.Refresh.Requested.TYPE:
                _refresh(tx, envelope)
            elif envelope.type in churn_model.EVENT_TYPES:
                _model_fitted(tx, envelope)
            elif envelope.type in POLICY_EVENTS:
                _policy_changed(tx, envelope)
            else:
                _decide_all(tx, [_define(tx, envelope)], envelope.recorded_at, envelope.position)
        _customer_events(tx, run)


def _customer_events(tx: Tx, envelopes: Sequence[Envelope]) -> None:
    if not envelopes:
        return
    definitions = load_definitions(tx)
    holders = {h for e in envelopes if e.type == ERASED for h in e.data.get("copies_at", [])}
    ids = sorted({e.customer_key for e in envelopes} | holders)
    states = load_states(tx, ids)
    scores = load_scores(tx, ids) if any(uses_rfm(d.rule) for d in definitions) else {}
    model = load_fit(tx) if any(uses_churn_risk(d.rule) for d in definitions) else None
    care = _care_versions(tx) if any(uses_care(d.rule) for d in definitions) else []
    cuts = load_value_cuts(tx) if model else {}
    top3 = load_top3(tx, ids) if any(uses_recommendations(d.rule) for d in definitions) else {}
    ledger = _Ledger(load_members(tx, ids), scores, model, care, cuts, top3=top3)
    for envelope in envelopes:
        customer = envelope.customer_key
        if (state := states.get(customer)) is None:
            state = states[customer] = profile_fold.empty(envelope.customer_id)
        if not profile_fold.apply(state, envelope):
            continue  # already folded: deciding again at an older "now" could flip back
        state["care_facts"] = fold_care(state.get("care_facts"), envelope)
        fold_skus(state, envelope)
        if envelope.type == ERASED:  # its history, and that of the copies of its data
            for key in [customer, *envelope.data.get("copies_at", [])]:
                held = states.get(key)
                if held is not None and (key == customer or held.get("status") != "erased"):
                    ledger.restart(definitions, key, held, envelope.recorded_at, envelope.position)
            continue
        for definition in definitions:
            ledger.decide(definition, customer, state, envelope.recorded_at, envelope.position)
    tx.upsert(
        "segment_state",
        ("customer_id",),
        ("customer_id", "state"),
        [(cid, orjson.dumps(state).decode()) for cid, state in sorted(states.items())],
    )
    ledger.write(tx)


def _define(tx: Tx, envelope: Envelope) -> Definition:
    """Store the definition a segment event sets; returns it."""
    data, at = envelope.data, utc_text(envelope.recorded_at)
    tx.execute(
        "INSERT INTO {segment_definitions} (segment_id, name, rule, purpose, version, created_at, "
        "updated_at, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (segment_id) DO UPDATE "
        "SET name = excluded.name, rule = excluded.rule, purpose = excluded.purpose, "
        "version = excluded.version, updated_at = excluded.updated_at, position = excluded.position",
        (
            data["segment_id"],
            data["name"],
            orjson.dumps(data["rule"]).decode(),
            data["purpose"],
            envelope.version,
            at,
            at,
            envelope.position,
        ),
    )
    return load_definitions(tx, data["segment_id"])[0]


def _refresh(tx: Tx, envelope: Envelope) -> None:
    """Rank RFM (if a segment reads it), then decide time-relative and RFM segments."""
    due = [
        d
        for d in load_definitions(tx)
        if is_time_relative(d.rule) or uses_rfm(d.rule) or uses_recommendations(d.rule)
    ]
    if any(uses_rfm(d.rule) for d in due):
        scores = rfm.scores(_purchases(tx, envelope.data["currency"]), envelope.occurred_at)
        tx.execute("DELETE FROM {segment_rfm}")
        tx.executemany(
            "INSERT INTO {segment_rfm} (customer_id, scores) VALUES (?, ?)",
            [
                (c, orjson.dumps({k: row[k] for k in ("r", "f", "m", "group")}).decode())
                for c, row in sorted(scores.items())
            ],
        )
    if due:
        _decide_all(tx, due, envelope.occurred_at, envelope.position)


def _model_fitted(tx: Tx, envelope: Envelope) -> None:
    """Keep the newest fit of the churn model, then decide the segments that read
    ``churn_risk.*`` for everyone at the fit's ``as_of``."""
    keep_fit(tx, envelope)
    model = load_fit(tx)
    assert model is not None
    cuts = value_cuts(model, (s for rows in all_states(tx) for _, s in rows)) if model.spend else {}
    keep_value_cuts(tx, cuts)
    due = [d for d in load_definitions(tx) if uses_churn_risk(d.rule)]
    if due:
        _decide_all(tx, due, envelope.occurred_at, envelope.position)


def _policy_changed(tx: Tx, envelope: Envelope) -> None:
    """Keep a version of the ``care`` policy (other policies concern no segment), then
    decide the segments that read ``care.*`` for everyone at the event's ``recorded_at``."""
    if envelope.data["name"] != CARE:
        return
    tx.execute(
        "INSERT INTO {segment_care_policy} (version, effective_at, document) VALUES (?, ?, ?) "
        "ON CONFLICT (version) DO NOTHING",
        (
            envelope.version,
            utc_text(envelope.occurred_at),
            orjson.dumps(envelope.data["document"]).decode(),
        ),
    )
    due = [d for d in load_definitions(tx) if uses_care(d.rule)]
    if due:
        _decide_all(tx, due, envelope.recorded_at, envelope.position)


def _care_versions(tx: Tx) -> CareVersions:
    """The care policy's versions kept by :func:`_policy_changed`, oldest first."""
    rows = tx.fetchall("SELECT effective_at, document FROM {segment_care_policy} ORDER BY version")
    return [
        (datetime.fromisoformat(at), CarePolicy.model_validate(orjson.loads(document)))
        for at, document in rows
    ]


def _purchases(tx: Tx, currency: str) -> Iterator[tuple[str, datetime, Decimal]]:
    """``(customer, occurred_at, amount)`` of live customers' purchases in ``currency``."""
    for rows in all_states(tx):
        for customer, state in rows:
            if state.get("status") not in MEMBER_STATUSES:
                continue
            for code, amount, occurred_at in state["orders"].values():
                if code == currency:
                    yield customer, datetime.fromisoformat(occurred_at), Decimal(amount)


class _Ledger:
    """Memberships of some customers, changed in memory, written back once with their history."""

    def __init__(
        self,
        members: dict[Member, tuple[str, int]],
        scores: Mapping[str, Mapping[str, Any]],
        model: FittedVersion | None = None,
        care: CareVersions | None = None,
        cuts: Mapping[str, int] | None = None,
        *,
        top3: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.before = dict(members)
        self.members = members
        self.scores = scores
        self.model = model
        self.care = care or []
        self.cuts = cuts or {}
        self.top3 = top3 or {}
        self.changes: list[tuple[int, str, str, str, str]] = []
        self.forgotten: list[str] = []

    def decide(
        self,
        definition: Definition,
        customer: str,
        state: Mapping[str, Any],
        now: datetime,
        position: int,
    ) -> None:
        key = (definition.segment_id, customer)
        if uses_churn_risk(definition.rule):
            state = with_risk(state, self.model, self.cuts)
        if uses_care(definition.rule):
            in_force = [doc for since, doc in self.care if since <= now]
            state = with_care(state, in_force[-1] if in_force else None, now)
        if uses_recommendations(definition.rule):
            state = with_top3(state, self.top3.get(customer))
        wanted = matches(definition.rule, definition.purpose, state, now, self.scores.get(customer))
        if wanted == (key in self.members):
            return
        at = utc_text(now)
        if wanted:
            self.members[key] = (at, position)
        else:
            del self.members[key]
        self.changes.append((position, *key, "entered" if wanted else "exited", at))

    def restart(
        self,
        definitions: Sequence[Definition],
        customer: str,
        state: Mapping[str, Any],
        now: datetime,
        position: int,
    ) -> None:
        """Forget the customer's history, then decide every segment afresh: ``entered`` or
        ``exited``, one row each (an erased customer: ``exited`` from all; module docstring)."""
        self.forgotten.append(customer)
        self.changes = [c for c in self.changes if c[2] != customer]
        for key in [k for k in self.members if k[1] == customer]:
            del self.members[key]
        for definition in definitions:
            self.decide(definition, customer, state, now, position)
            if (definition.segment_id, customer) not in self.members:
                change = (position, definition.segment_id, customer, "exited", utc_text(now))
                self.changes.append(change)

    def write(self, tx: Tx) -> None:
        """Store the net membership difference and the changes."""
        stale = [k for k, v in self.before.items() if self.members.get(k) != v]
        fresh = [(*k, *v) for k, v in self.members.items() if self.before.get(k) != v]
        tx.delete("segment_members", ("segment_id", "customer_id"), sorted(stale))
        member_columns = ("segment_id", "customer_id", "since", "position")
        tx.insert("segment_members", member_columns, sorted(fresh))
        tx.delete("segment_changes", ("customer_id",), [(c,) for c in self.forgotten])
        columns = ("position", "segment_id", "customer_id", "change", "at")
        tx.insert("segment_changes", columns, sorted(self.changes))


# --------------------------------------------------------------------------- loading


def _decide_all(tx: Tx, definitions: Sequence[Definition], now: datetime, position: int) -> None:
    """Decide ``definitions`` for every customer at ``now``, as caused by ``position``.

    Every customer's fold is read once, a chunk at a time, or twice when a definition reads
    ``recommendations.top3``: every top 3 depends on every contributing customer's basket
    (:mod:`projections.segment_recommendations`), so all of them are ranked before anyone is
    decided. Reading once would hold every fold in memory (GBs at a million customers, which
    this streams in chunks of 500); the ranking is kept from the first pass (never read back
    from ``segment_recs``), and the second reads only what the decisions read anyway."""
    with_scores = any(uses_rfm(d.rule) for d in definitions)
    model = load_fit(tx) if any(uses_churn_risk(d.rule) for d in definitions) else None
    care = _care_versions(tx) if any(uses_care(d.rule) for d in definitions) else []
    cuts = load_value_cuts(tx) if model else {}
    ranked = any(uses_recommendations(d.rule) for d in definitions)
    ranking = keep_top3(tx, all_states(tx)) if ranked else {}
    for rows in all_states(tx):
        ids = [customer for customer, _ in rows]
        scores = load_scores(tx, ids) if with_scores else {}
        top3 = {c: ranking[c] for c in ids if c in ranking}
        ledger = _Ledger(load_members(tx, ids), scores, model, care, cuts, top3=top3)
        for customer, state in rows:
            for definition in definitions:
                ledger.decide(definition, customer, state, now, position)
        ledger.write(tx)
