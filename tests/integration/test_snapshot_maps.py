"""Snapshots that reuse the encoded orders of the one before (:mod:`infra.encoded_maps`) load,
on SQLite and PostgreSQL, as the fold of every event: a generated history of purchase batches,
refunds, a merge, an unmerge, an erasure and reloads, checked after every step by another
store (another process's view: no customer in memory, every load a cache miss); and an
erasure forgets the erased customer's kept maps in both stores.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Snapshot

from commands import messages as m
from commands.service import CommandService, Context
from infra.store import EventStore
from tests.unit.test_properties import fold

pytestmark = pytest.mark.backends("sqlite", "postgres")
CTX = Context(actor="snapshot-maps")
STEPS = ("batch", "batch", "a few", "refund", "merge", "unmerge", "erase twin", "reload")


def order(n: int) -> str:
    return f"{n:07d}-".ljust(100, "x")


def purchases(customer_id: UUID, start: int, count: int) -> list[m.Command]:
    return [
        m.RecordPurchase(customer_id=customer_id, order_id=order(n), amount="12.50", currency="EUR")
        for n in range(start, start + count)
    ]


@pytest.fixture
def stores(database_url: str) -> Iterator[tuple[EventStore, EventStore]]:
    writer, reader = (EventStore(database_url, snapshot_interval=20) for _ in range(2))
    writer.encoded_maps.min_entries = 1  # every map kept, however small
    yield writer, reader
    writer.close()
    reader.close()


class History:
    """A survivor that grows, and a twin that is merged into it, unmerged and erased."""

    def __init__(self, store: EventStore) -> None:
        self.service = CommandService(store, index_key="k")
        self.survivor = self.register("Big Buyer")
        self.twin: UUID | None = None
        self.merged = False
        self.orders = 0

    def register(self, name: str) -> UUID:
        customer_id = uuid4()
        self.service.execute(m.RegisterCustomer(customer_id=customer_id, name=name), CTX)
        return customer_id

    def buy(self, customer_id: UUID, count: int) -> None:
        outcomes = self.service.execute_batch(purchases(customer_id, self.orders, count), CTX)
        assert {o.status for o in outcomes} == {"accepted"}
        self.orders += count

    def step(self, name: str) -> None:
        execute = self.service.execute
        if name in ("batch", "a few"):
            self.buy(self.survivor, 60 if name == "batch" else 5)
        elif name == "refund" and self.orders:
            refund = m.RefundPurchase(customer_id=self.survivor, order_id=order(self.orders - 1))
            execute(refund, CTX)
        elif name == "merge" and not self.merged:
            if self.twin is None:
                self.twin = self.register("Twin")
                execute(m.UpdateProfile(customer_id=self.twin, changes={"phone": "+4930901"}), CTX)
                self.buy(self.twin, 25)
            execute(m.MergeCustomers(customer_id=self.survivor, duplicate_id=self.twin), CTX)
            self.merged = True
        elif name == "unmerge" and self.merged:
            assert self.twin is not None
            execute(m.UnmergeCustomers(customer_id=self.survivor, duplicate_id=self.twin), CTX)
            self.merged = False
        elif name == "erase twin" and self.twin is not None and not self.merged:
            execute(m.EraseCustomer(customer_id=self.twin), CTX)
            self.twin = None
        elif name == "reload":  # the next command loads the survivor from the store
            self.service.cache.drop([self.survivor])


@pytest.mark.parametrize("seed", [16, 33])
def test_snapshots_built_on_kept_orders_load_as_the_fold(
    stores: tuple[EventStore, EventStore], seed: int
) -> None:
    writer, reader = stores
    history, draw = History(writer), random.Random(seed)
    spliced = 0
    checked = writer.encoded_maps._checked

    def splicing(kept: Any, mapping: dict[str, Any]) -> Any:
        nonlocal spliced
        encoding = checked(kept, mapping)
        spliced += kept is not None and encoding is kept  # built on the kept bytes
        return encoding

    writer.encoded_maps._checked = splicing  # type: ignore[method-assign]
    for step in [draw.choice(STEPS) for _ in range(40)]:
        history.step(step)
        cold = reader.customer(history.survivor)
        assert vars(cold) == vars(fold(reader, history.survivor)), step
    assert writer.snapshots is not None
    newest = next(iter(writer.snapshots.get(history.survivor, desc=True, limit=1)), None)
    assert isinstance(newest, Snapshot), "the history is long enough to be snapshotted"
    version = newest.originator_version
    assert vars(newest.mutate(None)) == vars(fold(reader, history.survivor, version))
    assert spliced >= 3


def test_an_erased_customer_is_forgotten_here_and_by_another_store(
    stores: tuple[EventStore, EventStore],
) -> None:
    """The store that erases forgets the customer's kept maps at once, another store at its
    next ``forget_erased``; what each keeps for its other customer stays."""
    writer, reader = stores
    reader.encoded_maps.min_entries = 1
    here, there = History(writer), History(reader)
    erased = here.register("Erased")
    for history, customer_id, batches in (
        (here, here.survivor, 2),  # snapshotted (and kept) by the 2nd batch
        (here, erased, 2),
        (there, there.survivor, 2),
        (there, erased, 4),  # loaded there: due once the events since outweigh the snapshot
    ):
        for _ in range(batches):
            history.buy(customer_id, 30)
    assert len(writer.encoded_maps) == len(reader.encoded_maps) == 2
    here.service.cache.drop([erased])  # the reader has saved it since
    here.service.execute(m.EraseCustomer(customer_id=erased), CTX)
    assert len(writer.encoded_maps) == 1
    assert len(reader.encoded_maps) == 2  # it has not looked yet
    reader.forget_erased()
    assert len(reader.encoded_maps) == 1
    for store, history in ((writer, here), (reader, there)):  # the one left: the survivor's
        store.encoded_maps.forget([history.survivor])
        assert len(store.encoded_maps) == 0
