"""Segments read model: rule-defined groups of customers, kept incrementally, with history.

* ``segment_definitions`` (rules, see :mod:`projections.segment_rules`) and ``segment_rfm``
  (the latest RFM scores given to :func:`refresh`) are not projection tables: a rebuild keeps them.
* :class:`SegmentsProjector` folds its own profile state per customer (``segment_state``) and,
  after EVERY envelope, decides each definition for that customer at ``now = recorded_at``;
  every flip is a row in ``segment_changes`` (at the event's time and position) and updates
  ``segment_members``. Deciding per envelope, in feed order, makes the result independent of
  batch sizes, so a rebuild reproduces the live tables row for row.
* :func:`put_definition` backfills the changed segment from ``segment_state`` and
  :func:`refresh` re-decides time-relative and RFM segments; both record changes at the
  wall-clock ``now`` with no position. A rebuild replays history as if today's definitions had
  always existed, so those rows (and a refresh's effects) are not reproduced by it.
* ``segment_changes.seq`` is assigned in commit order (writers take turns, see ``_sync``):
  the cursor for publishing ``customer.segment-membership``. A rebuild replays customer
  by customer and then renumbers it in position order (:meth:`SegmentsProjector.restore_feed_order`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from domain.errors import InvalidInput
from domain.values import Text, check_aware, normalise_text
from infra.envelope import Envelope
from projections import profile
from projections.framework import Projector, lock_positions
from projections.profiles import decode_cursor, encode_cursor
from projections.readstore import ReadStore, Tx
from projections.segment_rules import (
    Rule,
    is_time_relative,
    matches,
    parse,
    parse_purpose,
    uses_rfm,
)

SEGMENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CHUNK = 500
Member = tuple[str, str]  # (segment id, customer id)

DEFINITIONS_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS segment_definitions (
        segment_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        rule TEXT NOT NULL,
        purpose TEXT,
        version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS segment_rfm (
        customer_id TEXT PRIMARY KEY,
        scores TEXT NOT NULL)""",
)


def ensure_definitions(store: ReadStore) -> None:
    """Create the tables that outlive rebuilds: definitions and RFM scores (idempotent)."""
    with store.transaction() as tx:
        for statement in DEFINITIONS_SCHEMA:
            tx.raw(statement)


@dataclass(frozen=True)
class Definition:
    segment_id: str
    name: str
    rule: Rule
    purpose: str | None
    version: int
    created_at: str
    updated_at: str


class SegmentsProjector(Projector):
    """Keeps segment membership and its history; see the module docstring."""

    name = "segments"
    order_dependent = {"segment_changes": ("seq",)}  # publishing cursor: feed order
    schema_version = 1
    tables = ("segment_state", "segment_members", "segment_changes", "segment_applied")
    schema = (
        "CREATE TABLE IF NOT EXISTS {segment_state} (customer_id TEXT PRIMARY KEY, state TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS {segment_members} (
            segment_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            since TEXT NOT NULL,
            position BIGINT,
            PRIMARY KEY (segment_id, customer_id))""",
        "CREATE INDEX IF NOT EXISTS {segment_members}_customer_idx ON {segment_members} (customer_id)",
        """CREATE TABLE IF NOT EXISTS {segment_changes} (
            seq BIGINT PRIMARY KEY,
            segment_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            change TEXT NOT NULL,
            at TEXT NOT NULL,
            position BIGINT)""",
        "CREATE INDEX IF NOT EXISTS {segment_changes}_member_idx "
        "ON {segment_changes} (segment_id, customer_id, seq)",
        # Definition versions whose membership these tables hold (a rebuild's shadow catches up).
        "CREATE TABLE IF NOT EXISTS {segment_applied} (segment_id TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    )

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        definitions = _sync(tx, datetime.now(UTC))
        ids = sorted({e.customer_key for e in envelopes})
        states = _load_states(tx, ids)
        scores = _load_scores(tx, ids) if any(uses_rfm(d.rule) for d in definitions) else {}
        ledger = _Ledger(_load_members(tx, ids), scores)
        for envelope in envelopes:
            customer = envelope.customer_key
            if (state := states.get(customer)) is None:
                state = states[customer] = profile.empty(envelope.customer_id)
            if not profile.apply(state, envelope):
                continue  # already folded: deciding again at an older "now" could flip back
            for definition in definitions:
                ledger.decide(definition, customer, state, envelope.recorded_at, envelope.position)
        tx.executemany(
            "INSERT INTO {segment_state} (customer_id, state) VALUES (?, ?) "
            "ON CONFLICT (customer_id) DO UPDATE SET state = excluded.state",
            [(cid, orjson.dumps(state).decode()) for cid, state in sorted(states.items())],
        )
        ledger.write(tx)

    def restore_feed_order(self, tx: Tx) -> None:
        """Number ``segment_changes`` by event position, as a replay in feed order would.

        Ties (one event changing several segments) keep their order. A change without a
        position (a definition backfilled mid-rebuild) stays after the same customer's
        earlier changes. Two steps through negative numbers, so the key never collides.
        """
        tx.execute(
            "UPDATE {segment_changes} SET seq = -renumbered.new_seq FROM ("
            " SELECT seq, ROW_NUMBER() OVER (ORDER BY at_position, seq) AS new_seq FROM ("
            "  SELECT seq, COALESCE(MAX(position) OVER (PARTITION BY customer_id ORDER BY seq"
            "   ROWS UNBOUNDED PRECEDING), 0) AS at_position FROM {segment_changes}) AS keyed"
            ") AS renumbered WHERE {segment_changes}.seq = renumbered.seq"
        )
        tx.execute("UPDATE {segment_changes} SET seq = -seq WHERE seq < 0")


class _Ledger:
    """Memberships of some customers, changed in memory, written back once with their history."""

    def __init__(
        self,
        members: dict[Member, tuple[str, int | None]],
        scores: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.before = dict(members)
        self.members = members
        self.scores = scores
        self.changes: list[tuple[str, str, str, str, int | None]] = []

    def decide(
        self,
        definition: Definition,
        customer: str,
        state: Mapping[str, Any],
        now: datetime,
        position: int | None,
    ) -> None:
        key = (definition.segment_id, customer)
        wanted = matches(definition.rule, definition.purpose, state, now, self.scores.get(customer))
        if wanted == (key in self.members):
            return
        at = _iso(now)
        if wanted:
            self.members[key] = (at, position)
        else:
            del self.members[key]
        self.changes.append((*key, "entered" if wanted else "exited", at, position))

    def write(self, tx: Tx) -> int:
        """Store the net membership difference and the changes; returns how many changes."""
        stale = [k for k, v in self.before.items() if self.members.get(k) != v]
        fresh = [(*k, *v) for k, v in self.members.items() if self.before.get(k) != v]
        tx.executemany(
            "DELETE FROM {segment_members} WHERE segment_id = ? AND customer_id = ?", sorted(stale)
        )
        tx.executemany(
            "INSERT INTO {segment_members} (segment_id, customer_id, since, position) "
            "VALUES (?, ?, ?, ?)",
            sorted(fresh),
        )
        if self.changes:
            row = tx.fetchone("SELECT COALESCE(MAX(seq), 0) FROM {segment_changes}")
            first = int(row[0]) + 1 if row else 1
            tx.insert(
                "segment_changes",
                ("seq", "segment_id", "customer_id", "change", "at", "position"),
                [(first + i, *change) for i, change in enumerate(self.changes)],
            )
        return len(self.changes)


# --------------------------------------------------------------------------- loading


def _by_customer(tx: Tx, select: str, customer_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows of ``select`` (a query without WHERE) for some customers, in chunks."""
    rows = []
    for start in range(0, len(customer_ids), CHUNK):
        chunk = customer_ids[start : start + CHUNK]
        marks = ",".join("?" * len(chunk))
        rows += tx.fetchall(f"{select} WHERE customer_id IN ({marks})", chunk)
    return rows


def _load_states(tx: Tx, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    select = "SELECT customer_id, state FROM {segment_state}"
    return {c: orjson.loads(state) for c, state in _by_customer(tx, select, customer_ids)}


def _load_members(tx: Tx, customer_ids: Sequence[str]) -> dict[Member, tuple[str, int | None]]:
    select = "SELECT segment_id, customer_id, since, position FROM {segment_members}"
    return {(s, c): (since, p) for s, c, since, p in _by_customer(tx, select, customer_ids)}


def _load_scores(tx: Tx, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    select = "SELECT customer_id, scores FROM segment_rfm"
    return {c: orjson.loads(scores) for c, scores in _by_customer(tx, select, customer_ids)}


def _load_definitions(tx: Tx, segment_id: str | None = None) -> list[Definition]:
    where, params = ("WHERE segment_id = ?", [segment_id]) if segment_id else ("", [])
    rows = tx.fetchall(
        "SELECT segment_id, name, rule, purpose, version, created_at, updated_at "
        f"FROM segment_definitions {where} ORDER BY segment_id",
        params,
    )
    return [Definition(s, n, orjson.loads(r), p, int(v), c, u) for s, n, r, p, v, c, u in rows]


def _sync(tx: Tx, now: datetime) -> list[Definition]:
    """All definitions, after backfilling those whose version these tables have not applied.

    Every writer starts here and takes its turn until it commits: change numbers then follow
    commit order, and a definition changed while a rebuild's workers run is backfilled over
    every customer decided before it, exactly once.
    """
    tx.serialise("{segment_changes}")
    definitions = _load_definitions(tx)
    applied: dict[str, int] = dict(tx.fetchall("SELECT segment_id, version FROM {segment_applied}"))
    stale = [d for d in definitions if applied.get(d.segment_id) != d.version]
    if stale:
        _decide_all(tx, stale, now)
        tx.executemany(
            "INSERT INTO {segment_applied} (segment_id, version) VALUES (?, ?) "
            "ON CONFLICT (segment_id) DO UPDATE SET version = excluded.version",
            [(d.segment_id, d.version) for d in stale],
        )
    return definitions


def _decide_all(tx: Tx, definitions: Sequence[Definition], now: datetime) -> int:
    """Decide ``definitions`` for every customer at ``now``; returns the changes recorded."""
    total, after = 0, ""
    with_scores = any(uses_rfm(d.rule) for d in definitions)
    while True:
        rows = tx.fetchall(
            "SELECT customer_id, state FROM {segment_state} WHERE customer_id > ? "
            "ORDER BY customer_id LIMIT ?",
            (after, CHUNK),
        )
        if not rows:
            return total
        ids = [customer for customer, _ in rows]
        ledger = _Ledger(_load_members(tx, ids), _load_scores(tx, ids) if with_scores else {})
        for customer, state in rows:
            decoded = orjson.loads(state)
            for definition in definitions:
                ledger.decide(definition, customer, decoded, now, None)
        total += ledger.write(tx)
        after = ids[-1]


# --------------------------------------------------------------------------- commands


def put_definition(
    read_store: ReadStore,
    segment_id: str,
    name: str,
    rule: object,
    purpose: str | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Create or change a segment (validated), then backfill its membership in the same transaction.

    An unchanged definition keeps its version and backfills nothing (PUT is idempotent).
    """
    if not isinstance(segment_id, str) or not SEGMENT_ID.match(segment_id):
        raise InvalidInput("segment_id", f"must match {SEGMENT_ID.pattern}")
    title = normalise_text("name", name, kind=Text.LINE, max_length=200)
    if title is None:
        raise InvalidInput("name", "is required")
    checked, purpose = parse(rule), parse_purpose(purpose)
    now = check_aware("now", now) if now is not None else datetime.now(UTC)
    with read_store.transaction() as tx:
        lock_positions(tx, [SegmentsProjector.name])
        existing = _load_definitions(tx, segment_id)
        if not existing:
            tx.execute(
                "INSERT INTO segment_definitions (segment_id, name, rule, purpose, version, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?)",
                (segment_id, title, orjson.dumps(checked).decode(), purpose, _iso(now), _iso(now)),
            )
        elif (existing[0].name, existing[0].rule, existing[0].purpose) != (title, checked, purpose):
            tx.execute(
                "UPDATE segment_definitions SET name = ?, rule = ?, purpose = ?, "
                "version = version + 1, updated_at = ? WHERE segment_id = ?",
                (title, orjson.dumps(checked).decode(), purpose, _iso(now), segment_id),
            )
        _sync(tx, now)
        return asdict(_load_definitions(tx, segment_id)[0])


def refresh(
    read_store: ReadStore, now: datetime, rfm: Mapping[str, Mapping[str, Any]] | None = None
) -> int:
    """Re-decide time-relative and RFM segments for every customer at ``now``.

    ``rfm`` (customer id -> ``{"r", "f", "m", "group"}``), when given, replaces the stored
    scores, which events also use until the next refresh. Returns the changes recorded.
    """
    check_aware("now", now)
    with read_store.transaction() as tx:
        lock_positions(tx, [SegmentsProjector.name])
        if rfm is not None:
            tx.execute("DELETE FROM segment_rfm")
            tx.executemany(
                "INSERT INTO segment_rfm (customer_id, scores) VALUES (?, ?)",
                sorted((str(c), orjson.dumps(dict(s)).decode()) for c, s in rfm.items()),
            )
        due = [d for d in _sync(tx, now) if is_time_relative(d.rule) or uses_rfm(d.rule)]
        return _decide_all(tx, due, now) if due else 0


# --------------------------------------------------------------------------- queries


def list_definitions(tx: Tx) -> list[dict[str, Any]]:
    """Every segment definition, by id."""
    return [asdict(d) for d in _load_definitions(tx)]


def get_definition(tx: Tx, segment_id: str) -> dict[str, Any] | None:
    found = _load_definitions(tx, segment_id)
    return asdict(found[0]) if found else None


def members(
    tx: Tx,
    segment_id: str,
    *,
    cursor: str | None = None,
    limit: int = 50,
    as_of: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Members ``{customer_id, since, position}`` by customer id; ``as_of`` reads the history.

    Membership as of T is the latest change (in commit order) recorded at or before T.
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
            "AND c.seq = (SELECT MAX(d.seq) FROM {segment_changes} d WHERE d.segment_id = "
            "c.segment_id AND d.customer_id = c.customer_id AND d.at <= ?) "
            "ORDER BY c.customer_id LIMIT ?",
            (segment_id, str(after), _iso(check_aware("as_of", as_of)), limit + 1),
        )
    items = [{"customer_id": c, "since": s, "position": p} for c, s, p in rows[:limit]]
    return items, encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None


def changes(
    tx: Tx, segment_id: str | None = None, after_seq: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    """Membership changes after ``after_seq`` in commit order (one segment, or all)."""
    where = "seq > ?"
    params: list[Any] = [after_seq]
    if segment_id is not None:
        where += " AND segment_id = ?"
        params.append(segment_id)
    rows = tx.fetchall(
        "SELECT seq, segment_id, customer_id, change, at, position FROM {segment_changes} "
        f"WHERE {where} ORDER BY seq LIMIT ?",
        [*params, limit],
    )
    keys = ("seq", "segment_id", "customer_id", "change", "at", "position")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _iso(moment: datetime) -> str:
    """UTC with microseconds, so stored times sort as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
