"""Parked customers: one customer set aside so that every other customer keeps flowing.

When a projection cannot apply a customer's event (the projector raises, or a version is
missing from the feed), or the relay cannot publish one (the envelope is too large), that
customer is *parked*: a row records the first event held back (version, store position, size
when known), why, and when to try again. Later events of the customer wait behind it (per
customer order); the event store still holds them all, so a re-drive re-reads them from the
store and clears the row once they went through. Retries back off from
:data:`FIRST_RETRY_SECONDS` doubling up to :data:`MAX_RETRY_SECONDS`.

A :class:`ParkingLot` is one table: a projection's own ``{name}_parked`` (rebuilt and swapped
with its other tables), or the relay's ``relay_parked`` beside its checkpoint (``scope`` then
names the relay). Times here are wall-clock bookkeeping, not read-model content.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.events import EVENT_TYPES
from infra.envelope import Envelope
from infra.read_tx import Tx
from infra.resilience import transient

Apply = Callable[[Tx, Sequence[Envelope]], None]

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 300.0
MAX_REASON_CHARS = 1000

# Columns that record when and how often, not what: verify leaves them out.
VOLATILE_COLUMNS = ("reason", "parked_at", "attempts", "retry_at")


def table_schema(table: str, scope: str | None = None) -> str:
    """DDL of a parking table (``{name}`` placeholders allowed); ``scope`` adds a key column."""
    key = f"{scope} TEXT NOT NULL, " if scope else ""
    primary = f"{scope}, customer_id" if scope else "customer_id"
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ({key}"
        "customer_id TEXT NOT NULL, version BIGINT NOT NULL, position BIGINT NOT NULL, "
        "size BIGINT, reason TEXT NOT NULL, parked_at TEXT NOT NULL, "
        f"attempts INTEGER NOT NULL, retry_at TEXT NOT NULL, PRIMARY KEY ({primary}))"
    )


@dataclass(frozen=True)
class Parked:
    """A customer held back at ``version`` (store ``position``; envelope ``size`` in bytes)."""

    customer_id: str
    version: int
    position: int
    reason: str
    size: int | None = None
    parked_at: str = ""
    attempts: int = 0
    retry_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "version": self.version,
            "position": self.position,
            "size": self.size,
            "reason": self.reason,
            "parked_at": self.parked_at,
            "attempts": self.attempts,
            "retry_at": self.retry_at,
        }


def describe(error: BaseException) -> str:
    """A one-line reason for ``error`` that any database can store (control characters
    escaped, NUL included), at most :data:`MAX_REASON_CHARS` long."""
    text = f"{type(error).__name__}: {error}"
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return shown[:MAX_REASON_CHARS]


def retry_delay(attempts: int) -> float:
    """Seconds to wait before attempt ``attempts + 1``: 1, 2, 4, … up to 300."""
    return float(min(FIRST_RETRY_SECONDS * 2 ** min(attempts, 30), MAX_RETRY_SECONDS))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


_COLUMNS = "customer_id, version, position, size, reason, parked_at, attempts, retry_at"


class ParkingLot:
    """The parked customers kept in ``table`` (a ``{name}`` of the transaction's mapping, or a
    plain name), optionally only those whose ``scope`` column equals ``scope_value``."""

    def __init__(self, table: str, scope: tuple[str, str] | None = None) -> None:
        self.table = table
        self.scope = scope

    def _where(self, condition: str = "1 = 1") -> tuple[str, list[Any]]:
        if self.scope is None:
            return condition, []
        return f"{self.scope[0]} = ? AND {condition}", [self.scope[1]]

    def held_select(self, condition: str) -> tuple[str, list[Any]]:
        """``SELECT customer_id, version`` of the parked customers meeting ``condition`` (SQL
        on ``customer_id``), and the parameters that come before the condition's own."""
        where, params = self._where(condition)
        return f"SELECT customer_id, version FROM {self.table} WHERE {where}", params

    def park(self, tx: Tx, parked: Iterable[Parked], now: datetime | None = None) -> None:
        r"""Record ``parked`` (``parked_at`` defaults to ``now``); the next retry is due
        :func:`retry_delay` (of its ``attempts``) after ``now``. A row already there is replaced
        unless it holds the customer at a lower version: a park never moves past an event still
        held (a re-drive that got past it :meth:`release`\ s the row first)."""
        moment = now or datetime.now(UTC)
        columns = f"{self.scope[0]}, {_COLUMNS}" if self.scope else _COLUMNS
        scope = [self.scope[1]] if self.scope else []
        rows = [
            (
                *scope,
                p.customer_id,
                p.version,
                p.position,
                p.size,
                p.reason[:MAX_REASON_CHARS],
                p.parked_at or _iso(moment),
                p.attempts,
                _iso(moment + timedelta(seconds=retry_delay(p.attempts))),
            )
            for p in parked
        ]
        conflict = f"{self.scope[0]}, customer_id" if self.scope else "customer_id"
        tx.executemany(
            f"INSERT INTO {self.table} AS held ({columns}) "
            f"VALUES ({','.join('?' * (len(scope) + 8))}) "
            f"ON CONFLICT ({conflict}) DO UPDATE SET version = excluded.version, "
            "position = excluded.position, size = excluded.size, reason = excluded.reason, "
            "parked_at = excluded.parked_at, attempts = excluded.attempts, "
            "retry_at = excluded.retry_at WHERE excluded.version <= held.version",
            rows,
        )

    def release(self, tx: Tx, customer_id: str) -> None:
        """The customer flows again."""
        where, params = self._where("customer_id = ?")
        tx.execute(f"DELETE FROM {self.table} WHERE {where}", [*params, customer_id])

    def listing(
        self,
        tx: Tx,
        *,
        due_at: datetime | None = None,
        customer_id: str | None = None,
        limit: int = 1000,
    ) -> list[Parked]:
        """Parked customers, oldest first: all, those due for a retry at ``due_at``, or one."""
        condition, values = "1 = 1", []
        if due_at is not None:
            condition, values = "retry_at <= ?", [_iso(due_at)]
        if customer_id is not None:
            condition, values = f"{condition} AND customer_id = ?", [*values, customer_id]
        where, params = self._where(condition)
        rows = tx.fetchall(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE {where} "
            "ORDER BY parked_at, customer_id LIMIT ?",
            [*params, *values, limit],
        )
        return [
            Parked(
                customer_id=str(c),
                version=int(v),
                position=int(p),
                size=None if s is None else int(s),
                reason=str(r),
                parked_at=str(at),
                attempts=int(n),
                retry_at=str(retry),
            )
            for c, v, p, s, r, at, n, retry in rows
        ]

    def retry_now(self, tx: Tx, customer_id: str | None = None) -> int:
        """Make parked customers (all, or one) due at once; returns how many."""
        condition, values = "1 = 1", []
        if customer_id is not None:
            condition, values = "customer_id = ?", [customer_id]
        where, params = self._where(condition)
        before = self.count(tx, customer_id)
        tx.execute(
            f"UPDATE {self.table} SET retry_at = ? WHERE {where}",
            [_iso(datetime(1970, 1, 1, tzinfo=UTC)), *params, *values],
        )
        return before

    def count(self, tx: Tx, customer_id: str | None = None) -> int:
        condition, values = ("customer_id = ?", [customer_id]) if customer_id else ("1 = 1", [])
        where, params = self._where(condition)
        row = tx.fetchone(f"SELECT COUNT(*) FROM {self.table} WHERE {where}", [*params, *values])
        return int(row[0]) if row else 0

    def summary(self, tx: Tx, now: datetime | None = None) -> dict[str, Any]:
        """``{"count", "oldest": {…, "age_seconds"} | None}`` for status pages and metrics."""
        oldest = self.listing(tx, limit=1)
        summary: dict[str, Any] = {"count": self.count(tx), "oldest": None}
        if oldest:
            since = datetime.fromisoformat(oldest[0].parked_at)
            age = ((now or datetime.now(UTC)) - since).total_seconds()
            summary["oldest"] = {**oldest[0].to_dict(), "age_seconds": round(max(age, 0.0), 3)}
        return summary


def _guarded(tx: Tx, apply: Apply, envelopes: Sequence[Envelope]) -> None:
    with tx.savepoint():
        apply(tx, envelopes)


def _parkable(envelope: Envelope, error: Exception) -> bool:
    """Whether a failure to apply ``envelope`` parks its customer, or propagates: errors worth
    retrying as they are, and events that are not a customer's (segment definitions and
    refreshes concern everyone: skipping one would silently change every membership)."""
    return not transient(error) and envelope.type in EVENT_TYPES


def _apply_run(tx: Tx, apply: Apply, run: Sequence[Envelope]) -> tuple[int, Parked | None]:
    """Apply one customer's envelopes (in order): the last version applied (0: none) and,
    if one of them fails, the customer parked at that one."""
    try:
        _guarded(tx, apply, run)
        return run[-1].version, None
    except Exception as error:
        if not _parkable(run[0], error):
            raise
    applied = 0
    for envelope in run:  # find the event that fails; the ones before it stay applied
        try:
            _guarded(tx, apply, [envelope])
        except Exception as error:
            if not _parkable(envelope, error):
                raise
            reason = describe(error)
            return applied, Parked(
                envelope.customer_key, envelope.version, envelope.position, reason
            )
        applied = envelope.version
    return applied, None


def _apply_each(
    tx: Tx, apply: Apply, envelopes: Sequence[Envelope]
) -> tuple[dict[str, int], list[Parked]]:
    """One envelope at a time, in feed order: a customer whose event fails is parked and its
    later envelopes skipped; everything else keeps its place in the order."""
    applied: dict[str, int] = {}
    parked: dict[str, Parked] = {}
    for envelope in envelopes:
        key = envelope.customer_key
        if key in parked:
            continue
        try:
            _guarded(tx, apply, [envelope])
        except Exception as error:
            if not _parkable(envelope, error):
                raise
            parked[key] = Parked(key, envelope.version, envelope.position, describe(error))
            continue
        applied[key] = envelope.version
    return applied, list(parked.values())


def apply_isolated(
    tx: Tx, apply: Apply, envelopes: Sequence[Envelope], *, in_order: bool = False
) -> tuple[dict[str, int], list[Parked]]:
    """``apply`` (one projector) ``envelopes`` (each customer's next versions, in feed order)
    all at once under a savepoint, or, if that raises, customer by customer: returns the
    last version applied per customer and the customers to park. ``in_order`` (projections
    whose read model depends on the order across customers): the fallback goes envelope by
    envelope in feed order instead. Errors worth retrying as they are
    (:func:`~infra.resilience.transient`), and failures of events that are not a
    customer's, propagate."""
    if not envelopes:
        return {}, []
    try:
        _guarded(tx, apply, envelopes)
        return {e.customer_key: e.version for e in envelopes}, []
    except Exception as error:
        if transient(error):
            raise
    if in_order:
        return _apply_each(tx, apply, envelopes)
    runs: dict[str, list[Envelope]] = {}
    for envelope in envelopes:
        runs.setdefault(envelope.customer_key, []).append(envelope)
    applied, parked = {}, []
    for customer, run in runs.items():
        version, failed = _apply_run(tx, apply, run)
        if version:
            applied[customer] = version
        if failed is not None:
            parked.append(failed)
    return applied, parked


@dataclass(frozen=True)
class Share:
    """One read model's part of a batch for :func:`apply_shares`: ``apply`` (its tables
    mapped in ``tx``) of ``envelopes``, as :func:`apply_isolated` takes them."""

    tx: Tx
    apply: Apply
    envelopes: Sequence[Envelope]
    in_order: bool = False


def apply_shares(tx: Tx, shares: Sequence[Share]) -> list[tuple[dict[str, int], list[Parked]]]:
    """:func:`apply_isolated` of each share, optimistically: every share under ONE savepoint
    (two client calls per batch, not two per read model); only if that raises (errors worth
    retrying as they are propagate) is it undone and each share applied on its own by
    :func:`apply_isolated`, so a read model that fails parks only its own customers and the
    others apply theirs. Returns, per share, what :func:`apply_isolated` returns."""
    busy = [share for share in shares if share.envelopes]
    if len(busy) > 1:  # one share alone: apply_isolated already tries it under one savepoint
        try:
            with tx.savepoint():
                for share in busy:
                    share.apply(share.tx, share.envelopes)
        except Exception as error:
            if transient(error):
                raise
        else:
            return [({e.customer_key: e.version for e in s.envelopes}, []) for s in shares]
    return [apply_isolated(s.tx, s.apply, s.envelopes, in_order=s.in_order) for s in shares]
