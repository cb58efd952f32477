"""A batch applies exactly what its events applied one at a time would: every read model, row
for row, on SQLite and PostgreSQL (where rows are written one statement per table per batch,
:meth:`infra.read_tx.Tx.upsert`).

The feed is a generated store (:func:`tests.published_support.generated_store`: every event
type, merges, unmerges, erasures, business times), delivered as the live feeds deliver it:
in batches of random sizes, with earlier envelopes redelivered, and once with one event lost
(its customer is parked at the gap in both feeds, and its later events wait).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from consumers.store_feed import StoreFeed
from infra.envelope import Envelope
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from projections.framework import Binding, ensure_schema, now_iso, project
from projections.registry import all_projectors
from tests.published_support import generated_store


@pytest.fixture
def read_store(database_url: str) -> Iterator[ReadStore]:
    read_store = open_read_store(database_url)
    ensure_schema(read_store, all_projectors())
    yield read_store
    read_store.close()


@pytest.fixture
def envelopes(store: EventStore) -> list[Envelope]:
    generated_store(store, seed=5)
    return StoreFeed(store).read(0, 100_000)


def _feed(read_store: ReadStore, variant: str, batches: Sequence[Sequence[Envelope]]) -> None:
    """Apply ``batches`` (Kafka-style: no position filter) to fresh tables named for
    ``variant``."""
    projectors = all_projectors()
    bindings = [Binding(p, {t: f"{variant}_{t}" for t in p.all_tables()}) for p in projectors]
    states = {p.name: f"{variant}_{p.name}" for p in projectors}
    with read_store.transaction() as tx:
        for binding in bindings:
            binding.projector.create(tx.with_tables(binding.tables))
            tx.execute(
                "INSERT INTO projection_state (name, position, schema_version, tables, "
                "updated_at) VALUES (?, 0, 1, '', ?)",
                (states[binding.projector.name], now_iso()),
            )
    for batch in batches:
        with read_store.transaction() as tx:
            project(tx, bindings, batch, by_position=False, state_names=states)


def _rows(read_store: ReadStore, variant: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read model of ``variant`` (volatile columns left out), sorted."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with read_store.transaction() as tx:
        for projector in all_projectors():
            skip = projector.unverified()
            for table in projector.all_tables():
                physical = f"{variant}_{table}"
                columns = read_store.columns(tx, physical)
                kept = [c for c in columns if c not in skip.get(table, ())]
                rows = tx.fetchall(f"SELECT {', '.join(kept)} FROM {physical}")
                found[table] = sorted(rows, key=repr)
    return found


def _random_batches(envelopes: Sequence[Envelope], rng: random.Random) -> list[list[Envelope]]:
    """Batches of 1 to 60 envelopes; now and then one repeats some envelopes already sent."""
    batches, start = [], 0
    while start < len(envelopes):
        size = rng.randint(1, 60)
        batch = list(envelopes[start : start + size])
        if start and rng.random() < 0.3:
            again = rng.randint(1, min(start, 40))
            batch = list(envelopes[start - again : start]) + batch
        batches.append(batch)
        start += size
    return batches


def test_one_batch_equals_one_event_at_a_time(
    read_store: ReadStore, envelopes: list[Envelope]
) -> None:
    assert {e.type for e in envelopes} >= {
        "customer.registered",
        "customer.tagged",
        "customer.duplicate_absorbed",
        "customer.unmerged",
        "customer.erased",
    }
    _feed(read_store, "one", [[e] for e in envelopes])
    _feed(read_store, "all", [envelopes])
    _feed(read_store, "mix", _random_batches(envelopes, random.Random(7)))
    one = _rows(read_store, "one")
    assert one["audit_events"] and one["profiles"] and one["profile_tags"]
    assert _rows(read_store, "all") == one
    assert _rows(read_store, "mix") == one


def test_a_lost_event_parks_its_customer_alike_in_any_batching(
    read_store: ReadStore, envelopes: list[Envelope]
) -> None:
    rng = random.Random(3)
    later = [e for e in envelopes if e.version > 1 and e.type == "customer.tagged"]
    lost = rng.choice(later)
    feed = [e for e in envelopes if e is not lost]
    _feed(read_store, "one", [[e] for e in feed])
    _feed(read_store, "all", [feed])
    _feed(read_store, "mix", _random_batches(feed, rng))
    one = _rows(read_store, "one")
    assert any(row[0] == lost.customer_key for row in one["profiles_parked"])
    assert _rows(read_store, "all") == one
    assert _rows(read_store, "mix") == one
