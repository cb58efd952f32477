"""A command's cost does not grow with its customer's history (issue 13, item 3).

Costs are counted in stored bytes, never timed: what the store's mapper decodes for a command
(loads) and what snapshots write, as a customer grows to thousands of purchases.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import OperationalError, StoredEvent

from commands import messages as m
from commands.aggregate_cache import ENTRY_BYTES, AggregateCache
from commands.service import CommandService, Context
from domain.customer import Customer
from infra.snapshots import Footprints
from infra.store import EventStore

CTX = Context(actor="history")
INTERVAL = 50  # the production default


def order(n: int) -> str:
    return f"{n:07d}-".ljust(100, "x")  # 100-character order ids, as in the report


def purchases(customer_id: UUID, start: int, count: int) -> list[m.Command]:
    return [
        m.RecordPurchase(customer_id=customer_id, order_id=order(n), amount="12.50", currency="EUR")
        for n in range(start, start + count)
    ]


class Decoded:
    """Counts the stored bytes the store's mapper turns back into events and snapshots."""

    def __init__(self, store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        original = store.mapper.to_domain_event

        def counting(stored: StoredEvent) -> Any:
            self.bytes += len(stored.state)
            return original(stored)

        monkeypatch.setattr(store.mapper, "to_domain_event", counting)

    def during(self, service: CommandService, command: m.Command) -> int:
        """Bytes decoded while ``service`` executes ``command``."""
        before = self.bytes
        service.execute(command, CTX)
        return self.bytes - before


@pytest.fixture
def store() -> Iterator[EventStore]:
    store = EventStore("memory://", snapshot_interval=INTERVAL)
    yield store
    store.close()


def register(service: CommandService) -> UUID:
    customer_id = uuid4()
    service.execute(m.RegisterCustomer(customer_id=customer_id, name="Big Buyer"), CTX)
    return customer_id


def snapshot_rows(store: EventStore, customer_id: UUID) -> list[StoredEvent]:
    assert store.snapshots is not None
    return list(store.snapshots.recorder.select_events(customer_id))


def test_snapshots_never_write_more_than_the_events_they_follow(store: EventStore) -> None:
    service = CommandService(store, index_key="k")
    customer_id = register(service)
    saved_versions = []
    for batch in range(30):  # 3,000 purchases, in batches and one by one
        if batch % 10 == 9:
            for command in purchases(customer_id, batch * 100, 100):
                service.execute(command, CTX)
                saved_versions.append(store.customer(customer_id).version)
        else:
            service.execute_batch(purchases(customer_id, batch * 100, 100), CTX)
            saved_versions.append(store.customer(customer_id).version)
        footprint = store.footprints.get(customer_id)
        snapshots = snapshot_rows(store, customer_id)
        newest = snapshots[-1].originator_version if snapshots else 0
        after = store.stored_events(customer_id, newest)
        # the bookkeeping is the truth: what a load from the store reads ...
        assert footprint is not None
        assert (footprint.version, footprint.snapshot_version) == (saved_versions[-1], newest)
        assert footprint.load_bytes == sum(len(r.state) for r in [*snapshots[-1:], *after])
        # ... and a due snapshot was taken: a load reads at most about twice the state
        assert not store.footprints.due(customer_id)
    snapshots = snapshot_rows(store, customer_id)
    events = store.stored_events(customer_id)
    assert {s.originator_version for s in snapshots} <= set(saved_versions)  # one per save
    # every snapshot but the newest is followed by at least as many bytes of events
    assert sum(len(s.state) for s in snapshots[:-1]) <= sum(len(e.state) for e in events)
    # eventsourcing's rule took one every 50 events: 60 snapshots, 45 times the event bytes
    assert len(snapshots) < 15


def test_a_command_reads_the_same_bytes_whatever_the_history(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer adds one event before each command: the command reads just that."""
    read_per_command = {}
    for history in (300, 3000):
        store = EventStore("memory://", snapshot_interval=INTERVAL)
        service, other = CommandService(store, index_key="k"), CommandService(store, index_key="k")
        customer_id = register(service)
        for start in range(0, history, 500):
            service.execute_batch(purchases(customer_id, start, min(500, history - start)), CTX)
        decoded = Decoded(store, monkeypatch)
        read = []
        for n in range(20):
            other.execute(m.TagCustomer(customer_id=customer_id, tag=f"t{n}"), CTX)
            read.append(decoded.during(service, purchases(customer_id, history + n, 1)[0]))
        read_per_command[history] = max(read)
        store.close()
    assert 0 < read_per_command[3000] <= read_per_command[300] < 1000  # one tag event


def test_without_the_cache_a_load_reads_about_twice_the_state(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = CommandService(store, index_key="k", cache_bytes=0)
    customer_id = register(service)
    decoded = Decoded(store, monkeypatch)
    for start in range(0, 3000, 100):
        read = decoded.during(service, purchases(customer_id, start, 1)[0])
        state = snapshot_rows(store, customer_id)[-1:]
        state_bytes = len(state[0].state) if state else 0
        assert read <= 2 * state_bytes + INTERVAL * 1000 + 100 * 500  # one batch more
        service.execute_batch(purchases(customer_id, start + 1, 99), CTX)
    assert len(service.cache) == 0


def test_the_cache_keeps_live_customers_of_any_size_within_its_budget(store: EventStore) -> None:
    service = CommandService(store, index_key="k")
    small, large, larger = register(service), register(service), register(service)
    service.execute_batch(purchases(large, 0, 300), CTX)
    service.execute_batch(purchases(larger, 1000, 600), CTX)
    footprints = store.footprints
    customers = {c: store.customer(c) for c in (small, large, larger)}
    sizes = {c: footprints.get(c).load_bytes + ENTRY_BYTES for c in customers}  # type: ignore[union-attr]
    assert sizes[small] < 64 * 1024 <= sizes[large] < sizes[larger]

    cache = AggregateCache(budget_bytes=sum(sizes.values()))
    cache.keep(customers.values(), footprints)
    assert len(cache) == 3 and cache.size_bytes == sum(sizes.values())  # the small one too
    assert cache.take([small])[small][0] is customers[small]

    tight = AggregateCache(budget_bytes=sizes[larger])
    tight.keep([customers[large]], footprints)
    tight.keep([customers[larger]], footprints)  # the least recently kept goes
    assert list(tight.take(customers)) == [larger] and len(tight) == 0

    stale = store.customer(large, version=customers[large].version - 1)
    cache.keep([stale], footprints)  # not what the store holds now: never kept
    assert cache.take([large])[large][0] is customers[large]


def test_an_erased_customer_leaves_the_cache_and_its_footprint(store: EventStore) -> None:
    service = CommandService(store, index_key="k")
    customer_id = register(service)
    service.execute_batch(purchases(customer_id, 0, 400), CTX)
    assert len(service.cache) == 1
    service.execute(m.EraseCustomer(customer_id=customer_id), CTX)
    assert len(service.cache) == 0 and store.footprints.get(customer_id) is None
    assert snapshot_rows(store, customer_id) == []  # erasure dropped them


def test_footprints_decide_snapshots_by_size() -> None:
    footprints = Footprints(interval=3)
    customer_id = uuid4()

    def rows(first: int, count: int, size: int) -> list[StoredEvent]:
        return [StoredEvent(customer_id, v, "t", b"x" * size) for v in range(first, first + count)]

    footprints.loaded(customer_id, None, rows(1, 2, 10))
    assert not footprints.due(customer_id)  # fewer than `interval` events
    assert footprints.extend(customer_id, rows(3, 1, 10)) and footprints.due(customer_id)
    footprints.snapshotted(customer_id, 3, 100)
    assert footprints.extend(customer_id, rows(4, 5, 10)) and not footprints.due(customer_id)
    assert footprints.extend(customer_id, rows(9, 5, 10)) and footprints.due(customer_id)
    assert not footprints.extend(customer_id, rows(20, 1, 10))  # a gap: forgotten
    assert footprints.get(customer_id) is None and not footprints.due(customer_id)
    assert not Footprints(interval=0).due(customer_id)


def test_a_kept_customer_is_what_a_fresh_load_gives(store: EventStore) -> None:
    service, other = CommandService(store, index_key="k"), CommandService(store, index_key="k")
    customer_id = register(service)
    service.execute_batch(purchases(customer_id, 0, 400), CTX)
    other.execute(m.UpdateProfile(customer_id=customer_id, changes={"name": "Renamed"}), CTX)
    other.execute(m.SetConsent(customer_id=customer_id, purpose="profiling", granted=True), CTX)
    service.execute(m.TagCustomer(customer_id=customer_id, tag="vip"), CTX)  # fast-forwards
    kept, _ = service.cache.take([customer_id])[customer_id]
    fresh = store.customer(customer_id)
    assert isinstance(kept, Customer) and vars(kept) == vars(fresh)
    assert (kept.name, kept.tags, kept.consents) == ("Renamed", ["vip"], {"profiling": True})


def test_a_snapshot_that_cannot_be_stored_does_not_fail_the_committed_command(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = CommandService(store, index_key="k")
    customer_id = register(service)
    assert store.snapshots is not None

    def refuse(rows: list[StoredEvent], **_: Any) -> None:
        raise OperationalError("the snapshot table is out of reach")

    monkeypatch.setattr(store.snapshots.recorder, "insert_events", refuse)
    outcomes = service.execute_batch(purchases(customer_id, 0, 100), CTX)
    assert {o.status for o in outcomes} == {"accepted"}
    assert store.customer(customer_id).version == 102  # registered, new, 100 purchases
    assert store.footprints.get(customer_id) is None  # learnt again at the next save
    monkeypatch.undo()
    service.execute_batch(purchases(customer_id, 100, 100), CTX)
    assert [s.originator_version for s in snapshot_rows(store, customer_id)] == [202]


def test_erasing_an_unmerged_duplicate_drops_the_holder_of_its_copies(store: EventStore) -> None:
    """The survivor's stream keeps the duplicate's moved data sealed with the duplicate's key:
    the erasure changes how it reads without an event of the survivor's, so it must leave."""
    service = CommandService(store, index_key="k")
    survivor, duplicate = register(service), register(service)
    service.execute_batch(purchases(survivor, 0, 400), CTX)
    service.execute(m.UpdateProfile(customer_id=duplicate, changes={"phone": "+4930901820"}), CTX)
    service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
    service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
    service.execute_batch(purchases(survivor, 400, 10), CTX)
    assert len(service.cache) == 2  # the survivor and the unmerged duplicate
    service.execute(m.EraseCustomer(customer_id=duplicate), CTX)
    assert service.cache.take([survivor, duplicate]) == {}
