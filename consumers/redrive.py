"""Re-driving parked customers of projections from the event store (the source of truth).

A customer parked by a projection (see :mod:`projections.parking`) is healed by reading its
events from the store after the version the projection holds and applying them in order,
through the same :func:`projections.framework.project` as every feed. One transaction per
customer and projection, which first locks that projection's position row: feeders hold the
same lock while they apply a batch, so a feed never skips an event the re-drive has not read
(a feed skips a parked customer's events; the re-drive reads the store after that commit).
Events a feed delivers later are skipped by version. If the customer fails again it stays
parked with one more attempt and a longer wait.

Feeds call :func:`redrive` with ``due_only`` (automatic retries); ``clientele projections
redrive`` calls it for everything (or one customer) at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from uuid import UUID

import structlog

from consumers.store_feed import StoreFeed
from projections.framework import Binding, Projector, lock_positions, project, versions
from projections.parking import Parked, describe
from projections.readstore import ReadStore, transient

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
