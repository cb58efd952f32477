"""Loading many aggregates at once: the latest snapshot and the newer events of up to 500
aggregates per two queries, instead of two queries per aggregate (the repository's way).

The batch command path prefetches every aggregate its commands name with this, so a batch of
500 commands costs a handful of reads before its single write transaction. Aggregates the
caller already holds (``known``, at some version) are brought up to date instead: only their
newer events are read and applied, so what a load reads does not grow with their history;
each comes with the digest of its version's stored event, checked against the store's.
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
from infra.snapshots import row_digest
from infra.sql_chunks import chunks
from infra.store import EventStore

log = structlog.get_logger(__name__)
Known = tuple[Aggregate, bytes]  # an aggregate, the digest of its version's stored event


def load_many(
    store: EventStore,
    aggregate_ids: Sequence[UUID],
    known: Mapping[UUID, Known] | None = None,
) -> dict[UUID, Aggregate]:
    """The stored aggregates among ``aggregate_ids`` (absent ones are left out).

    ``known`` aggregates, each with the :func:`~infra.snapshots.row_digest` of the event at its
    version, are taken over (mutated in place) and fast-forwarded by their events newer than
    their version, once the store is seen to hold that very event (the row the same query
    returns has that digest): one whose event the store does not hold (a store restored to an
    earlier version, maybe written again up to it) is dropped and loaded afresh. The others
    are folded from their newest snapshot.
    """
    # a copy (it is taken over), made without hashing the ids again: a UUID's hash is Python
    # code, and every lookup per aggregate showed in the writer's profile
    held: dict[UUID, Known] = dict(known) if known else {}
    found: dict[UUID, Aggregate] = {}
    unique = list(dict.fromkeys(aggregate_ids))
    for chunk in chunks(unique):
        # from the known version itself: its row proves the store holds what we hold (digest)
        versions = {i: entry[0].version - 1 for i in chunk if (entry := held.get(i)) is not None}
        snapshots, events = store.backend.latest(chunk, versions)  # two queries on SQL
        unheld = [i for i, v in versions.items() if not _holds(events.get(i), v + 1, held[i][1])]
        for aggregate_id in unheld:
            del held[aggregate_id], versions[aggregate_id]
        if unheld:
            log.warning("store.cache_unheld", customers=len(unheld))
            cold_snapshots, cold_events = store.backend.latest(unheld, {})
            snapshots, events = snapshots | cold_snapshots, events | cold_events
        store.data_keys.preload(i.hex for i in [*snapshots, *events])
        for aggregate_id in chunk:
            snapshot, newer = snapshots.get(aggregate_id), events.get(aggregate_id, [])
            entry = held.get(aggregate_id)
            aggregate: Any = None
            if entry is not None:
                aggregate, newer = entry[0], newer[1:]  # the known version itself
            for row in [snapshot, *newer] if snapshot is not None else newer:
                aggregate = store.mapper.to_domain_event(row).mutate(aggregate)  # type: ignore[attr-defined]
            if aggregate is None:
                continue
            found[aggregate_id] = aggregate
            if isinstance(aggregate, Customer):
                if entry is not None:
                    store.footprints.extend(aggregate_id, newer)
                else:
                    store.footprints.loaded(aggregate_id, snapshot, newer)
    return found


def _holds(rows: Sequence[StoredEvent] | None, version: int, digest: bytes) -> bool:
    """Whether ``rows`` (an aggregate's events from some version on) start with the event
    stored at ``version`` whose bytes have ``digest`` (:func:`~infra.snapshots.row_digest`)."""
    return (
        rows is not None
        and bool(rows)
        and rows[0].originator_version == version
        and row_digest(rows[0]) == digest
    )


def histories(
    store: EventStore, customer_ids: Sequence[UUID]
) -> Iterator[tuple[UUID, list[CustomerEvent]]]:
    """(customer id, every event of theirs, oldest first) for each customer among
    ``customer_ids`` in their order (absent ones left out): one query per 500 customers and
    one for their data keys, however long their histories; no snapshot is read (what is
    decided from the events needs all of them). Each customer's events are decoded as they
    are reached, so a batch's decoded events are not all held at once."""
    store.forget_erased()  # no key shredded elsewhere opens a copy of the erased person's data
    unique = list(dict.fromkeys(customer_ids))
    for chunk in chunks(unique):
        _, rows = store.backend.latest(chunk, dict.fromkeys(chunk, 0))  # all after version 0
        store.data_keys.preload(i.hex for i in rows)
        for customer_id in chunk:
            if (stored := rows.pop(customer_id, None)) is not None:
                events = [store.mapper.to_domain_event(row) for row in stored]
                yield customer_id, [e for e in events if isinstance(e, CustomerEvent)]
