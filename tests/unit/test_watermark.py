"""A Kafka-fed projection's position is a watermark: every event at or below it is applied,
or its customer parked (by the projection, or by the relay). Partitions arrive in any order;
here the batches are what a partition would deliver (:mod:`consumers.watermark`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from consumers import watermark
from consumers.store_feed import StoreFeed
from consumers.watermark import Watermarks
from infra.envelope import Envelope
from infra.parking import Parked
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from projections.framework import Binding, ensure_schema, lock_positions, park, positions, project
from projections.profiles import ProfilesProjector

CTX = Context(actor="watermark")
PROFILES = ProfilesProjector()
BINDINGS = [Binding.live(PROFILES)]


@pytest.fixture
def read_store(tmp_path: Path) -> Iterator[ReadStore]:
    read_store = open_read_store(f"sqlite:///{tmp_path / 'read.db'}")
    ensure_schema(read_store, [PROFILES])
    yield read_store
    read_store.close()


def history(store: EventStore) -> dict[str, list[Envelope]]:
    """Ann, Bob and Cid registered, then Ann and Bob tagged: name -> envelopes."""
    service = CommandService(store, default_region="DE", index_key="k")
    names = ["Ann", "Bob", "Cid"]
    ids = [service.execute(m.RegisterCustomer(name=n), CTX).customer_id for n in names]
    for customer in ids[:2]:
        assert customer is not None
        service.execute(m.TagCustomer(customer_id=customer, tag="t"), CTX)
    fed = StoreFeed(store).read(0, 100)
    return {n: [e for e in fed if e.customer_id == i] for n, i in zip(names, ids, strict=True)}


def feed(
    read_store: ReadStore,
    marks: Watermarks,
    batch: Sequence[Envelope],
    parked: Sequence[Parked] = (),
) -> int:
    """Apply ``batch`` (parking ``parked``) as a consumer does; the position after."""
    with marks.transaction(read_store) as tx:
        locked = lock_positions(tx, ["profiles"])
        project(tx, BINDINGS, batch, by_position=False, advance=False)
        park(tx, PROFILES, parked)
        marks.advance(tx, BINDINGS, locked, batch)
    return positions(read_store)["profiles"]


def nobody() -> dict[str, int]:
    return {}


def test_the_position_waits_for_a_lower_event_of_another_partition(
    any_store: EventStore, read_store: ReadStore
) -> None:
    events = history(any_store)
    ann, bob, cid = events["Ann"], events["Bob"], events["Cid"]
    marks = Watermarks(any_store, nobody)
    assert feed(read_store, marks, bob) == 0  # Ann's registration comes first, unread
    assert feed(read_store, marks, ann[:1]) == bob[0].position  # Cid's registration next
    assert feed(read_store, marks, cid) == cid[0].position < ann[1].position  # Ann's tag
    assert feed(read_store, marks, ann[1:]) == max(e.position for e in [*ann, *bob, *cid])
    assert not marks.unfinished


@pytest.mark.parametrize("held_by", ["projection", "relay"])
def test_parked_customers_hold_nobody_back(
    any_store: EventStore, read_store: ReadStore, held_by: str
) -> None:
    events = history(any_store)
    ann, bob, cid = events["Ann"], events["Bob"], events["Cid"]
    first = ann[0]
    parked = [Parked(first.customer_key, 1, first.position, "cannot")]
    relay_held: Callable[[], dict[str, int]] = nobody
    if held_by == "relay":
        relay_held, parked = (lambda: {first.customer_key: 1}), []
    marks = Watermarks(any_store, relay_held)
    assert feed(read_store, marks, [*bob, *cid], parked) == bob[1].position


def test_a_long_walk_is_cut_and_goes_on_without_a_batch(
    any_store: EventStore, read_store: ReadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = history(any_store)
    everything = sorted((e for es in events.values() for e in es), key=lambda e: e.position)
    monkeypatch.setattr(watermark, "MAX_SCAN", 1)
    monkeypatch.setattr(watermark, "FIRST_WINDOW", 1)
    marks = Watermarks(any_store, nobody)
    assert feed(read_store, marks, everything) == everything[0].position
    for event in everything[1:]:
        assert marks.unfinished
        assert feed(read_store, marks, []) == event.position  # what an idle consumer does
    feed(read_store, marks, [])
    assert not marks.unfinished


def test_a_customer_is_passed_only_from_the_version_it_is_held_at(
    any_store: EventStore, read_store: ReadStore
) -> None:
    events = history(any_store)
    ann, bob, cid = events["Ann"], events["Bob"], events["Cid"]
    marks = Watermarks(any_store, lambda: {ann[1].customer_key: 2})  # her tag, by the relay
    assert feed(read_store, marks, [*bob, *cid]) == 0  # her registration is missing, not held
    assert feed(read_store, marks, ann[:1]) == bob[1].position


def test_a_batch_rolled_back_does_not_pass(any_store: EventStore, read_store: ReadStore) -> None:
    events = history(any_store)
    ann, bob = events["Ann"], events["Bob"]
    marks = Watermarks(any_store, nobody)
    with pytest.raises(RuntimeError), marks.transaction(read_store) as tx:
        marks.advance(tx, BINDINGS, lock_positions(tx, ["profiles"]), bob)
        raise RuntimeError("the batch failed after its walk")
    assert positions(read_store)["profiles"] == 0
    assert feed(read_store, marks, ann[:1]) == ann[0].position  # Bob's are not applied
