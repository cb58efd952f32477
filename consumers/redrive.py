"""Re-driving parked customers of projections from the event store (the source of truth).

A customer parked by a projection (see :mod:`infra.parking`) is healed by reading its
events from the store after the version the projection holds and applying them in order,
through the same :func:`projections.framework.project` as every feed. One transaction per
customer and projection, which first locks that projection's position row: feeders hold the
same lock while they apply a batch, so a feed never skips an event the re-drive has not read
(a feed skips a parked customer's events; the re-drive reads the store after that commit).
Events a feed delivers later are skipped by version. If the customer fails again it stays
parked with one more attempt and a longer wait.

A projection fed in log order (``Projector.log_order``: segments) cannot take a customer's
held events out of their place in the log: while the customer was parked, segment
definitions and refreshes decided everyone (the parked customer with the state it was held
at, RFM ranks with its stale purchases), and applying the events now would decide them
against a later world than a rebuild does. There each due customer is first tried (its held
events applied and rolled back); if any now goes through, the projection is rebuilt from the
log (:func:`consumers.rebuild.rebuild`, which parks again whoever still fails), so a re-drive
converges to exactly what a rebuild gives. Customers still parked keep when they were first
parked, and the tried ones count one more attempt.

Feeds call :func:`redrive` with ``due_only`` (automatic retries); ``clientele projections
redrive`` calls it for everything (or one customer) at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from uuid import UUID

import structlog

from consumers.rebuild import rebuild
from consumers.store_feed import StoreFeed
from infra.parking import Parked, describe
from infra.readstore import ReadStore
from infra.resilience import transient
from projections.framework import (
    Binding,
    Projector,
    apply_handled,
    lock_positions,
    project,
    versions,
)

log = structlog.get_logger(__name__)
CHUNK = 2000


@dataclass(frozen=True)
class Redriven:
    """The outcome for one parked customer: events applied, and why it is still parked."""

    projection: str
    customer_id: str
    applied: int
    parked: Parked | None


def redrive(
    feed: StoreFeed,
    read_store: ReadStore,
    projectors: Sequence[Projector],
    *,
    customer_id: UUID | None = None,
    due_only: bool = True,
    limit: int = 100,
) -> list[Redriven]:
    """Re-drive parked customers of ``projectors``: those due for a retry (``due_only``) or
    all, up to ``limit`` per projection; only ``customer_id`` if given."""
    outcomes = []
    wanted = None if customer_id is None else str(customer_id)
    for projector in projectors:
        binding = Binding.live(projector)
        with read_store.transaction(binding.tables) as tx:
            candidates = projector.parking.listing(
                tx,
                due_at=datetime.now(UTC) if due_only else None,
                customer_id=wanted,
                limit=limit,
            )
        if projector.log_order and candidates:
            outcomes += _redrive_in_log_order(feed, read_store, binding, candidates)
            continue
        for candidate in candidates:
            try:
                outcomes.append(_redrive_one(feed, read_store, binding, candidate.customer_id))
            except Exception as error:  # e.g. the store's copy cannot be read either
                if transient(error):
                    raise
                outcomes.append(_failed(read_store, binding, candidate, error))
    return outcomes


def _failed(read_store: ReadStore, binding: Binding, row: Parked, error: Exception) -> Redriven:
    """A re-drive that failed outside the projector: the customer stays parked, with one
    more attempt (so retries back off) and the reason."""
    still = replace(row, reason=describe(error), attempts=row.attempts + 1)
    with read_store.transaction(binding.tables) as tx:
        binding.projector.parking.park(tx, [still])
        still = binding.projector.parking.listing(tx, customer_id=row.customer_id, limit=1)[0]
    log.error("projection.redrive_failed", projection=binding.projector.name, **still.to_dict())
    return Redriven(binding.projector.name, row.customer_id, 0, still)


def _redrive_one(
    feed: StoreFeed, read_store: ReadStore, binding: Binding, customer: str
) -> Redriven:
    projector = binding.projector
    lot = projector.parking
    applied = 0
    with read_store.transaction() as tx:
        lock_positions(tx, [projector.name])
        scoped = tx.with_tables(binding.tables)
        before = lot.listing(scoped, customer_id=customer, limit=1)
        if not before:  # another process re-drove it meanwhile
            return Redriven(projector.name, customer, 0, None)
        lot.release(scoped, customer)
        held = versions(scoped, projector, [customer]).get(customer, 0)
        while True:
            envelopes = feed.customer_events(UUID(customer), held, CHUNK)
            project(tx, [binding], envelopes, by_position=False, advance=False)
            reached = versions(scoped, projector, [customer]).get(customer, 0)
            applied += reached - held
            again = lot.listing(scoped, customer_id=customer, limit=1)
            if again:  # parked again: keep when it was first parked, wait longer
                still = replace(
                    again[0], attempts=before[0].attempts + 1, parked_at=before[0].parked_at
                )
                lot.park(scoped, [still])
                still = lot.listing(scoped, customer_id=customer, limit=1)[0]
                log.warning(
                    "projection.redrive_failed",
                    projection=projector.name,
                    customer_id=customer,
                    applied=applied,
                    attempts=still.attempts,
                    reason=still.reason,
                )
                return Redriven(projector.name, customer, applied, still)
            if len(envelopes) < CHUNK:
                break
            held = reached
    log.info(
        "projection.redriven", projection=projector.name, customer_id=customer, applied=applied
    )
    return Redriven(projector.name, customer, applied, None)


class _Undo(Exception):
    """Rolls a trial back."""


def _trial(feed: StoreFeed, read_store: ReadStore, binding: Binding, customer: str) -> str | None:
    """Why the customer's held events still fail, or cannot be read from the store (None: they
    go through now); applied in a savepoint that is always rolled back."""
    projector = binding.projector
    with read_store.transaction(binding.tables) as tx:
        held = versions(tx, projector, [customer]).get(customer, 0)
        try:
            envelopes = feed.customer_events(UUID(customer), held, CHUNK)
            with tx.savepoint():
                apply_handled(projector, tx, envelopes)
                raise _Undo
        except _Undo:
            return None
        except Exception as error:
            if transient(error):
                raise
            return describe(error)


def _redrive_in_log_order(
    feed: StoreFeed, read_store: ReadStore, binding: Binding, candidates: Sequence[Parked]
) -> list[Redriven]:
    """Try ``candidates``; rebuild the projection if one of them goes through now (see the
    module docstring)."""
    projector = binding.projector
    reasons = {c.customer_id: _trial(feed, read_store, binding, c.customer_id) for c in candidates}
    tried = set(reasons)
    with read_store.transaction(binding.tables) as tx:
        before = {p.customer_id: p for p in projector.parking.listing(tx, limit=1_000_000)}
        held = versions(tx, projector, sorted(tried))
    rebuilt = any(reason is None for reason in reasons.values())
    if rebuilt:
        rebuild(feed, read_store, projector)
        log.info("projection.redriven_by_rebuild", projection=projector.name, tried=len(tried))
    outcomes = []
    with read_store.transaction(binding.tables) as tx:
        after = {p.customer_id: p for p in projector.parking.listing(tx, limit=1_000_000)}
        again = []
        for customer, now in after.items():
            was = before.get(customer)
            if was is None or not (rebuilt or customer in tried):
                continue  # parked by the rebuild for the first time, or left alone
            attempts = was.attempts + (customer in tried)
            reason = now.reason if rebuilt else reasons.get(customer) or now.reason
            again.append(replace(now, parked_at=was.parked_at, attempts=attempts, reason=reason))
        projector.parking.park(tx, again)
        reached = versions(tx, projector, sorted(tried))
        for customer in tried:
            still = projector.parking.listing(tx, customer_id=customer, limit=1)
            applied = reached.get(customer, 0) - held.get(customer, 0)
            outcomes.append(
                Redriven(projector.name, customer, applied, still[0] if still else None)
            )
    for outcome in outcomes:
        event = "projection.redrive_failed" if outcome.parked else "projection.redriven"
        log.info(event, projection=projector.name, customer_id=outcome.customer_id)
    return outcomes
