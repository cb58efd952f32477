"""Loading many aggregates at once: the latest snapshot and the newer events of up to 500
aggregates per two queries, instead of two queries per aggregate (the repository's way).

The batch command path prefetches every aggregate its commands name with this, so a batch of
500 commands costs a handful of reads before its single write transaction. Aggregates the
caller already holds (``known``, at some version) are brought up to date instead: only their
newer events are read and applied, so what a load reads does not grow with their history.
Every customer loaded leaves its footprint (:mod:`infra.snapshots`) with the store.

Whole histories of many customers (:func:`histories`: what the policy sweeps decide from) are
read the same way, one query per 500 customers, with their data keys preloaded alongside.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from uuid import UUID

import structlog
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from domain.customer import Customer
from domain.events import CustomerEvent
from infra.store import EventStore

log = structlog.get_logger(__name__)
CHUNK = 500


def load_many(
    store: EventStore,
    aggregate_ids: Sequence[UUID],
    known: Mapping[UUID, Aggregate] | None = None,
) -> dict[UUID, Aggregate]:
    """The stored aggregates among ``aggregate_ids`` (absent ones are left out).

    ``known`` aggregates are taken over (mutated in place) and fast-forwarded by their events
    newer than their version, once the store is seen to hold that version: one whose version
    the store does not hold (a restored or rewritten store) is dropped and loaded afresh. The
    others are folded from their newest snapshot.
    """
    known = dict(known or {})
    found: dict[UUID, Aggregate] = {}
    unique = list(dict.fromkeys(aggregate_ids))
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start : start + CHUNK]
        # from the known version itself: its row proves the store holds what we hold
        versions = {i: known[i].version - 1 for i in chunk if i in known}
        snapshots, events = store.backend.latest(chunk, versions)  # two queries on SQL
        unheld = [i for i in versions if not _holds(events.get(i), versions[i] + 1)]
        for aggregate_id in unheld:
            del known[aggregate_id], versions[aggregate_id]
        if unheld:
            log.warning("store.cache_unheld", customers=len(unheld))
            cold_snapshots, cold_events = store.backend.latest(unheld, {})
            snapshots, events = snapshots | cold_snapshots, events | cold_events
        store.data_keys.preload(i.hex for i in [*snapshots, *events])
        for aggregate_id in chunk:
            snapshot, newer = snapshots.get(aggregate_id), events.get(aggregate_id, [])
            aggregate: Any = known.get(aggregate_id)
            if aggregate is not None:
                newer = newer[1:]  # the known version itself
            for row in [snapshot, *newer] if snapshot is not None else newer:
                aggregate = store.mapper.to_domain_event(row).mutate(aggregate)  # type: ignore[attr-defined]
            if aggregate is None:
                continue
            found[aggregate_id] = aggregate
            if isinstance(aggregate, Customer):
                if aggregate_id in versions:
                    store.footprints.extend(aggregate_id, newer)
                else:
                    store.footprints.loaded(aggregate_id, snapshot, newer)
    return found


def _holds(rows: Sequence[StoredEvent] | None, version: int) -> bool:
    """Whether ``rows`` (an aggregate's events from some version on) start at ``version``."""
    return rows is not None and bool(rows) and rows[0].originator_version == version


def histories(
    store: EventStore, customer_ids: Sequence[UUID]
) -> Iterator[tuple[UUID, list[CustomerEvent]]]:
    """(customer id, every event of theirs, oldest first) for each customer among
    ``customer_ids`` in their order (absent ones left out): one query per 500 customers and
    one for their data keys, however long their histories; no snapshot is read (what is
    decided from the events needs all of them). Each customer's events are decoded as they
    are reached, so a batch's decoded events are not all held at once."""
    unique = list(dict.fromkeys(customer_ids))
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start : start + CHUNK]
        _, rows = store.backend.latest(chunk, dict.fromkeys(chunk, 0))  # all after version 0
        store.data_keys.preload(i.hex for i in rows)
        for customer_id in chunk:
            if (stored := rows.pop(customer_id, None)) is not None:
                events = [store.mapper.to_domain_event(row) for row in stored]
                yield customer_id, [e for e in events if isinstance(e, CustomerEvent)]
