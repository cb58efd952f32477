"""The projector framework: one code path for live feeds, the embedded runner and rebuilds.

A :class:`Projector` declares the event types it handles, the tables it owns (DDL with
``{table}`` placeholders) and how one envelope changes them. :func:`project` applies a batch
of envelopes to several projectors in ONE read-store transaction, together with each
projection's position (and, for Kafka feeds, the consumer offsets), so a crash at any point
either applied a batch completely or not at all. Each projection also keeps the last version
it applied per customer, which makes redelivery and overlapping feeds harmless.

No single customer can stall a projection: a batch is applied to every projection under one
savepoint; if a projector raises, that is undone and each projection applies the batch under
its own, the failing one customer by customer (projections fed in log order: event by event,
in log order). A customer whose event cannot be applied, or whose next version is missing
from the feed, is parked for that projection (``{name}_parked``, see :mod:`infra.parking`)
and the others commit. Its later events wait behind it until :mod:`consumers.redrive`
re-reads them from the event store. Segment events (definitions, refreshes) concern every
customer: they are never parked nor held back, and one that cannot be applied stops its
projection (an error, retried) rather than be skipped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import ClassVar

import structlog

from domain.events import EVENT_TYPES
from infra.envelope import Envelope
from infra.parking import (
    VOLATILE_COLUMNS,
    Parked,
    ParkingLot,
    Share,
    apply_shares,
    table_schema,
)
from infra.read_tx import Tx
from infra.readstore import ReadStore
from infra.sql_chunks import among, chunks

log = structlog.get_logger(__name__)

FRAMEWORK_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS projection_state (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL DEFAULT 0,
        schema_version INTEGER NOT NULL,
        tables TEXT NOT NULL,
        updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS consumer_offsets (
        consumer_group TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (consumer_group, topic, partition))""",
)


MERGES = frozenset({"customer.merged_into", "customer.duplicate_absorbed", "customer.unmerged"})


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Projector(ABC):
    """How events change one read model. Subclasses are stateless; all state is in tables."""

    name: ClassVar[str]
    schema_version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]]
    schema: ClassVar[tuple[str, ...]]
    # Event types ``apply`` is given; None = every customer event type. Other events of the
    # feed (segment definitions and refreshes) reach only projectors that name them.
    handles: ClassVar[frozenset[str] | None] = None
    # True: the read model depends on facts across customers (segment definitions, refreshes,
    # RFM ranks), so it is fed the store's log in global order in every mode (never Kafka's
    # per-partition order) and rebuilt in log order (never customer by customer).
    log_order: ClassVar[bool] = False
    # For ``log_order`` projections: the customer event types whose handling reads or changes
    # other customers' rows (merges). Up to the first of those, or of any event that is not
    # a customer's (segment definitions, refreshes, fits), a rebuild may replay them customer
    # by customer like the others (:mod:`consumers.rebuild_by_customer`).
    crosses: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        """Change this projection's tables for new envelopes (feed order, none seen before).

        Batches let projectors load and write each touched row once per batch.
        """

    def all_tables(self) -> tuple[str, ...]:
        return (*self.tables, self.versions_table, self.parked_table)

    @property
    def versions_table(self) -> str:
        return f"{self.name}_versions"

    @property
    def parked_table(self) -> str:
        return f"{self.name}_parked"

    @property
    def parking(self) -> ParkingLot:
        """This projection's parked customers (in the tables mapped by the transaction)."""
        return ParkingLot(f"{{{self.parked_table}}}")

    def unverified(self) -> dict[str, tuple[str, ...]]:
        """Columns ``verify`` leaves out, by logical table: when and how often a customer was
        parked (wall-clock bookkeeping). Every other column is a function of the log."""
        return {self.parked_table: VOLATILE_COLUMNS}

    def create(self, tx: Tx) -> None:
        """Create this projection's tables under the names mapped in ``tx``."""
        tx.execute(
            f"CREATE TABLE IF NOT EXISTS {{{self.versions_table}}} "
            "(customer_id TEXT PRIMARY KEY, version BIGINT NOT NULL)"
        )
        tx.execute(table_schema(f"{{{self.parked_table}}}"))
        for statement in self.schema:
            tx.execute(statement)


@dataclass(frozen=True)
class Binding:
    """A projector bound to concrete table names (live, or a rebuild's shadow tables)."""

    projector: Projector
    tables: Mapping[str, str]

    @classmethod
    def live(cls, projector: Projector) -> Binding:
        return cls(projector, {t: t for t in projector.all_tables()})


def ensure_schema(store: ReadStore, projectors: Iterable[Projector]) -> list[str]:
    """Create the framework tables and any projection seen for the first time (idempotent).

    Returns the names of projections whose ``schema_version`` changed since their tables were
    built: those are migrated by a rebuild (read models are disposable, history is not).
    """
    stale = []
    with store.transaction() as tx:
        for statement in FRAMEWORK_SCHEMA:
            tx.raw(statement)
        for projector in projectors:
            row = tx.fetchone(
                "SELECT schema_version FROM projection_state WHERE name = ?", (projector.name,)
            )
            if row is None:
                projector.create(tx.with_tables(Binding.live(projector).tables))
                tx.execute(
                    "INSERT INTO projection_state "
                    "(name, position, schema_version, tables, updated_at) VALUES (?, 0, ?, ?, ?)",
                    (
                        projector.name,
                        projector.schema_version,
                        ",".join(projector.tables),
                        now_iso(),
                    ),
                )
            else:  # tables added to every projection later on
                scoped = tx.with_tables(Binding.live(projector).tables)
                scoped.execute(table_schema(f"{{{projector.parked_table}}}"))
                if int(row[0]) != projector.schema_version:
                    stale.append(projector.name)
    return stale


def positions(store: ReadStore) -> dict[str, int]:
    """Each projection's position (the newest store position it has applied). Never locks:
    readers must not queue behind (or deadlock with) feeders that hold these rows."""
    with store.snapshot() as tx:
        rows = tx.fetchall("SELECT name, position FROM projection_state")
    return {name: int(position) for name, position in rows}


def lock_positions(tx: Tx, names: Iterable[str] | None = None) -> dict[str, int]:
    """Read (and on PostgreSQL lock) projection positions until ``tx`` ends.

    Feeders read positions and apply the batch in one transaction, so a concurrent rebuild
    swap can never move a position under their feet.
    """
    lock = " FOR UPDATE" if tx.dialect == "postgres" else ""
    wanted = sorted(set(names)) if names is not None else []
    where = f" WHERE name IN ({','.join('?' * len(wanted))})" if wanted else ""
    if names is not None and not wanted:
        return {}
    rows = tx.fetchall(
        f"SELECT name, position FROM projection_state{where} ORDER BY name{lock}", wanted
    )
    return {n: int(p) for n, p in rows}


def versions(tx: Tx, projector: Projector, customers: Sequence[str]) -> dict[str, int]:
    """The last version ``projector`` applied for each of ``customers`` (absent: none yet)."""
    seen: dict[str, int] = {}
    for condition, params in among(tx, "customer_id", customers):
        rows = tx.fetchall(_versions_select(projector, condition), params)
        seen.update({customer: int(version) for customer, version in rows})
    return seen


def _versions_select(projector: Projector, condition: str) -> str:
    return f"SELECT customer_id, version FROM {{{projector.versions_table}}} WHERE {condition}"


Known = tuple[dict[str, int], dict[str, int]]
"""Of some customers, for one binding: the last version applied, and the version held at
(parked customers)."""


def bookkeeping(tx: Tx, bindings: Sequence[Binding], customers: Sequence[str]) -> list[Known]:
    """Per binding, :func:`versions` of ``customers`` and those of them parked (with the
    version each is held at): ONE statement per chunk of customers for all bindings, instead
    of two per binding; the ids are sent once, each binding's tables read under its names.
    Read once before any binding applies: ``bindings`` must not share a versions or parked
    table (:func:`project` checks it)."""
    known: list[Known] = [({}, {}) for _ in bindings]
    if not bindings:
        return known
    among_batch = "customer_id IN (SELECT customer_id FROM batch)"
    for chunk in chunks(customers):
        ids, params = tx.values(chunk)
        parts = []
        for index, binding in enumerate(bindings):
            scoped = tx.with_tables(binding.tables)
            held, held_params = binding.projector.parking.held_select(among_batch)
            applied = _versions_select(binding.projector, among_batch)
            parts.append(f"SELECT {2 * index} AS n, * FROM ({scoped.sql(applied)}) AS a")
            parts.append(f"SELECT {2 * index + 1}, * FROM ({scoped.sql(held)}) AS h")
            params += held_params
        statement = f"WITH batch (customer_id) AS ({ids}) {' UNION ALL '.join(parts)}"
        for n, customer, version in tx.fetchall(statement, params):
            known[n // 2][n % 2][customer] = int(version)
    return known


def park(tx: Tx, projector: Projector, parked: Sequence[Parked]) -> None:
    """Set customers aside for ``projector`` (``tx`` maps its tables); logged as errors."""
    projector.parking.park(tx, parked)
    for item in parked:
        log.error(
            "projection.customer_parked",
            projection=projector.name,
            table=tx.sql(f"{{{projector.parked_table}}}"),
            customer_id=item.customer_id,
            version=item.version,
            position=item.position,
            reason=item.reason,
        )


def apply_handled(projector: Projector, tx: Tx, envelopes: Sequence[Envelope]) -> None:
    """Give ``projector`` the envelopes it handles (``tx`` maps its tables)."""
    todo = [e for e in envelopes if projector.handles is None or e.type in projector.handles]
    if todo:
        projector.apply(tx, todo)


def _accept(
    projector: Projector, fresh: Sequence[Envelope], known: Known
) -> tuple[list[Envelope], list[Parked]]:
    """Of ``fresh`` (past the projection's position), the envelopes to apply (each customer's
    next versions, in feed order) and the customers to park for a version missing from the
    feed; ``known`` (:func:`bookkeeping`) is updated as they are accepted."""
    handles = projector.handles
    offered = [e for e in fresh if e.type in EVENT_TYPES or (handles and e.type in handles)]
    seen, held = known
    accepted: list[Envelope] = []
    gaps: list[Parked] = []
    for envelope in offered:
        customer = envelope.customer_key
        if customer in held:
            continue  # waits behind its parked event: a re-drive reads it from the store
        expected = seen.get(customer, 0) + 1
        if envelope.version < expected:
            continue  # redelivered or already applied by another feed
        # (segment events come from the log, in order: a gap there is never a lost message)
        if envelope.version > expected and envelope.type in EVENT_TYPES:
            held[customer] = expected
            reason = f"version {expected} missing from the feed (got {envelope.version})"
            gaps.append(Parked(customer, expected, envelope.position, reason))
            continue
        seen[customer] = envelope.version
        accepted.append(envelope)
    return accepted, gaps


def _past(envelopes: Sequence[Envelope], floor: int, lowest: int) -> Sequence[Envelope]:
    """``envelopes`` past position ``floor`` (``lowest``: their lowest position)."""
    return envelopes if floor < lowest else [e for e in envelopes if e.position > floor]


def project(
    tx: Tx,
    bindings: Sequence[Binding],
    envelopes: Sequence[Envelope],
    *,
    by_position: bool = True,
    advance: bool = True,
    state_names: Mapping[str, str] | None = None,
) -> None:
    """Apply ``envelopes`` (in feed order) to every binding inside the transaction ``tx``.

    A customer whose event a projector cannot apply, or whose next version is missing, is
    parked for that projection (the rest commits); its later envelopes are skipped. Errors
    worth retrying as they are (lost connection, deadlock, …) still raise.

    ``by_position`` skips envelopes at or below a projection's recorded position (feeds in
    global order: the store); Kafka feeds pass False and rely on per-customer versions.
    ``state_names`` maps projection names to the ``projection_state`` row to advance (a
    rebuild advances its shadow row); ``advance=False`` leaves the rows alone (a rebuild's
    replay by customer, which sets them once at the end and so never queues on them).
    Rows to advance are locked first, in name order like :func:`lock_positions`, so every
    writer takes its locks in one order (rows, then anything a projector locks).
    """
    if not bindings:
        return
    _check_own_tables(tx, bindings)
    row_names = [(state_names or {}).get(b.projector.name, b.projector.name) for b in bindings]
    marks = ",".join("?" * len(row_names))
    lock = " FOR UPDATE" if advance and tx.dialect == "postgres" else ""
    known: dict[str, int] = dict(
        tx.fetchall(
            f"SELECT name, position FROM projection_state WHERE name IN ({marks}) "
            f"ORDER BY name{lock}",
            row_names,
        )
    )
    if missing := [name for name in row_names if name not in known]:
        raise LookupError(f"projection {missing[0]!r} has no state row; run migrate")
    at = [int(known[name]) for name in row_names]
    floors = at if by_position else [0] * len(at)
    lowest = min((e.position for e in envelopes), default=0)
    fresh = [_past(envelopes, floor, lowest) for floor in floors]
    # Only the bindings with an envelope past their position, and only the customers of
    # envelopes past the lowest of those positions, are looked up: a store-fed batch that
    # most read models have applied already (a rebuild's log-order pass, a lagging one) reads
    # no versions for them.
    busy = [index for index, todo in enumerate(fresh) if todo]
    if not busy:
        return
    floor = min(floors[index] for index in busy)
    customers = sorted({e.customer_key for e in envelopes if e.position > floor})
    looked_up = bookkeeping(tx, [bindings[index] for index in busy], customers)
    plans = [
        (bindings[index], *_accept(bindings[index].projector, fresh[index], found))
        for index, found in zip(busy, looked_up, strict=True)
    ]
    shares = [
        Share(
            tx.with_tables(binding.tables),
            partial(apply_handled, binding.projector),
            accepted,
            binding.projector.log_order,
        )
        for binding, accepted, _ in plans
    ]
    outcomes = apply_shares(tx, shares)
    for (binding, _, gaps), share, (applied, failed) in zip(plans, shares, outcomes, strict=True):
        projector = binding.projector
        key, columns = ("customer_id",), ("customer_id", "version")
        share.tx.upsert(projector.versions_table, key, columns, sorted(applied.items()))
        if gaps or failed:
            park(share.tx, projector, [*gaps, *failed])
    advanced: dict[str, int] = {}
    for index in busy:
        reached = max(e.position for e in fresh[index])
        if advance and reached > at[index]:
            advanced[row_names[index]] = reached
    if advanced:  # one statement for every row the batch moved
        cases = " ".join("WHEN ? THEN ?" for _ in advanced)
        tx.execute(
            f"UPDATE projection_state SET position = CASE name {cases} ELSE position END, "
            "updated_at = ? "
            f"WHERE name IN ({','.join('?' * len(advanced))})",
            [*(v for item in advanced.items() for v in item), now_iso(), *advanced],
        )


def _check_own_tables(tx: Tx, bindings: Sequence[Binding]) -> None:
    """Raise ValueError if two ``bindings`` share a versions or parked table: their
    :func:`bookkeeping` is read once per batch, so the second would apply it again."""
    for kind in ("versions_table", "parked_table"):
        names = [
            tx.with_tables(b.tables).sql(f"{{{getattr(b.projector, kind)}}}") for b in bindings
        ]
        if len(set(names)) != len(names):
            raise ValueError(f"bindings share a {kind.replace('_', ' ')}: {sorted(names)}")
