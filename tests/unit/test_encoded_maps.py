"""Snapshots encode each order once (:mod:`infra.encoded_maps`), into exactly the bytes a whole
encoding gives, and a snapshot-assisted load stays the fold of every event.

Costs are counted (tagged values the transcoder encodes inside snapshots), never timed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from eventsourcing.domain import Snapshot
from hypothesis import example, given, settings
from hypothesis import strategies as st

from commands import messages as m
from commands.service import CommandService, Context
from infra import personal_data, transcoder
from infra.data_keys import NONCE_BYTES
from infra.encoded_maps import ENTRY_OVERHEAD, EncodedMaps
from infra.store import EventStore
from infra.transcoder import OrjsonTranscoder
from tests.unit.test_properties import fold

CTX = Context(actor="encoded-maps")
ENCODE = OrjsonTranscoder().encode
MOMENT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)

order_ids = st.text(min_size=1, max_size=12)  # quotes, escapes, any script
amounts = st.sampled_from([Decimal("12.50"), Decimal("12.5"), Decimal("-0"), Decimal("1E+3")])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), order_ids, amounts, st.integers(0, 10**6)),
        st.tuples(st.just("pop"), st.integers(0, 50)),
        st.tuples(st.just("replace"), st.integers(0, 50), amounts),  # an equal, new entry
        st.tuples(st.just("move"), st.integers(0, 50)),  # taken out, then in again (last)
        st.tuples(st.just("rename"), order_ids),  # the last entry, under another key
        st.tuples(st.just("reload")),  # every entry a new object, as after a load
        st.tuples(st.just("save")),  # a save without a snapshot
        st.tuples(st.just("snapshot")),
    ),
    max_size=60,
)


def entry(amount: Decimal, seconds: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR", "occurred_at": MOMENT + timedelta(seconds=seconds)}


def apply(orders: dict[str, dict[str, Any]], operation: tuple[Any, ...]) -> None:
    kind, *args = operation
    keys = list(orders)
    if kind == "add":
        orders[args[0]] = entry(args[1], args[2])
    elif kind == "rename" and keys and args[0] not in orders:
        orders[args[0]] = orders.pop(keys[-1])
    elif kind == "reload":
        fresh = orjson.loads(ENCODE(orders))
        orders.clear()
        orders.update(transcoder.revive_tagged(fresh))
    elif keys and kind in ("pop", "replace", "move"):
        key = keys[args[0] % len(keys)]
        if kind == "replace":
            orders[key] = {**orders[key], "amount": args[1]}
        else:
            taken = orders.pop(key)
            if kind == "move":
                orders[key] = taken


@settings(max_examples=300, deadline=None)
@given(operations)
# an equal entry that is stored differently: caught by the identity check only
@example([("add", "a", Decimal("12.50"), 0), ("snapshot",), ("replace", 0, Decimal("12.5"))])
@example([("add", "a", Decimal("1E+3"), 0), ("snapshot",), ("replace", 0, Decimal("1000"))])
@example([("add", "a", Decimal("-0"), 0), ("save",), ("replace", 0, Decimal("0"))])
# the same entry under another key: caught by the key check only
@example([("add", "a", Decimal("12.50"), 0), ("snapshot",), ("rename", "b")])
@example([("add", "a", Decimal("1"), 0), ("add", "b", Decimal("2"), 1), ("save",), ("move", 0)])
def test_a_snapshot_holds_exactly_the_bytes_of_encoding_the_whole_map(
    steps: list[tuple[Any, ...]],
) -> None:
    kept, customer_id = EncodedMaps(ENCODE, min_entries=1), uuid4()
    orders: dict[str, dict[str, Any]] = {}
    refunded = {"r": entry(Decimal("3.10"), 5)}
    for step in [*steps, ("snapshot",)]:
        if step[0] == "save":
            kept.follow(customer_id, {"purchases": orders, "refunded": refunded})
        elif step[0] == "snapshot":
            state: dict[str, Any] = {"purchases": orders, "refunded": refunded, "tags": []}
            expected = ENCODE({"state": state})
            kept.substitute(customer_id, state)
            assert ENCODE({"state": state}) == expected
            assert type(state["purchases"]) is (orjson.Fragment if orders else dict)
        else:
            apply(orders, step)


def test_a_save_racing_another_save_of_the_customer_keeps_one_and_counts_one() -> None:
    """Two threads save the same customer: the second's whole keep ends inside the first's
    (run here from the encoder the first calls, between its take and its keep)."""
    big = {f"{n:05d}": entry(Decimal("12.50"), n) for n in range(100)}
    one = len(ENCODE(big)) + ENTRY_OVERHEAD * len(big)
    racing = [True]

    def encode(value: Any) -> bytes:
        if racing and racing.pop():
            kept.substitute(first, {"purchases": dict(big)})  # the other thread, whole
        return ENCODE(value)

    kept = EncodedMaps(encode, min_entries=50, budget=2 * one + 100)
    first, second = uuid4(), uuid4()
    kept.substitute(first, {"purchases": dict(big)})
    assert len(kept) == 1
    kept.substitute(second, {"purchases": dict(big)})  # fits beside it: only one is counted
    assert len(kept) == 2


@pytest.mark.parametrize("save", ["substitute", "follow"])
def test_an_erasure_during_a_save_is_not_undone_by_its_keep(save: str) -> None:
    """The erasure (another thread's ``forget``) runs while the save encodes, between its
    take and its keep: what the save took is not kept again."""
    erasing: list[UUID] = []

    def encode(value: Any) -> bytes:
        kept.forget(erasing)
        erasing.clear()
        return ENCODE(value)

    kept, customer_id = EncodedMaps(encode, min_entries=1), uuid4()
    orders = {"a": entry(Decimal("1.50"), 0)}
    kept.substitute(customer_id, {"purchases": orders})
    orders["b"] = entry(Decimal("2.50"), 1)  # something for the save to encode
    erasing.append(customer_id)
    getattr(kept, save)(customer_id, {"purchases": orders})
    assert len(kept) == 0
    kept.substitute(customer_id, {"purchases": orders})  # after it, kept as ever
    assert len(kept) == 1


def test_what_is_kept_stays_within_its_budget_and_leaves_with_an_erasure() -> None:
    big = {f"{n:05d}": entry(Decimal("12.50"), n) for n in range(100)}
    one = len(ENCODE(big)) + ENTRY_OVERHEAD * len(big)  # what keeping it counts
    kept = EncodedMaps(ENCODE, min_entries=50, budget=2 * one + 100)
    first, second, third = uuid4(), uuid4(), uuid4()
    for customer_id in (first, second):
        kept.substitute(customer_id, {"purchases": dict(big)})
    assert len(kept) == 2
    kept.substitute(third, {"purchases": dict(big)})  # the least recently used goes
    assert len(kept) == 2
    kept.follow(first, {"purchases": big})
    assert len(kept) == 2  # nothing was kept for it any more: nothing to follow
    kept.forget([second, third])
    assert len(kept) == 0
    huge = {f"{n:05d}": entry(Decimal("12.50"), n) for n in range(300)}
    kept.substitute(first, {"purchases": huge})  # larger than the budget: not kept
    assert len(kept) == 0
    state: dict[str, Any] = {"purchases": {"one": entry(Decimal("1.00"), 0)}}
    kept.substitute(first, state)  # too small to be worth keeping
    assert len(kept) == 0 and type(state["purchases"]) is dict


# ------------------------------------------------------- the store's snapshots


@pytest.fixture
def growing() -> Iterator[tuple[EventStore, CommandService]]:
    store = EventStore("memory://", snapshot_interval=50)
    store.encoded_maps.min_entries = 1  # every map kept, however small
    yield store, CommandService(store, index_key="k")
    store.close()


def purchases(customer_id: UUID, start: int, count: int) -> list[m.Command]:
    return [
        m.RecordPurchase(
            customer_id=customer_id,
            order_id=f"{n:07d}-".ljust(100, "x"),
            amount="12.50",
            currency="EUR",
        )
        for n in range(start, start + count)
    ]


def register(service: CommandService, name: str = "Big Buyer") -> UUID:
    customer_id = uuid4()
    service.execute(m.RegisterCustomer(customer_id=customer_id, name=name), CTX)
    return customer_id


def test_each_order_is_encoded_once_however_many_snapshots_follow(
    growing: tuple[EventStore, CommandService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshots after batches 1, 2, 4 and 7 (:mod:`infra.snapshots`) held 100, 200, 400 and
    700 orders: re-encoded each time, 1,400 orders' decimals and datetimes (2,800 values)."""
    store, service = growing
    encoded = {"in snapshots": 0}
    default, take = transcoder._default, store._take_snapshots

    def counting(value: Any) -> Any:
        encoded["in snapshots"] += 1
        return default(value)

    def taking(processing_event: Any) -> None:
        monkeypatch.setattr(transcoder, "_default", counting)
        try:
            take(processing_event)
        finally:
            monkeypatch.setattr(transcoder, "_default", default)

    monkeypatch.setattr(store, "_take_snapshots", taking)
    customer_id = register(service)
    for batch in range(7):
        service.execute_batch(purchases(customer_id, batch * 100, 100), CTX)
    snapshots = store.snapshots.recorder.select_events(customer_id) if store.snapshots else []
    assert len(snapshots) == 4
    # every order's amount and moment once, and each snapshot's own four moments (its
    # timestamp, registered_at, _created_on, _modified_on)
    assert encoded["in snapshots"] == 2 * 700 + 4 * 4
    assert vars(store.customer(customer_id)) == vars(fold(store, customer_id))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["purchases", "a few", "refund", "merge", "unmerge", "erase duplicate", "reload"]
        ),
        max_size=16,
    )
)
def test_a_load_from_snapshots_is_the_fold_of_every_event(steps: list[str]) -> None:
    """Refunds, merges and unmerges change the maps, a reload gives them new entries, an
    erasure of the duplicate forgets what was kept for it (the survivor's kept maps stay):
    snapshots taken in between still load as the fold, and the newest one holds the fold at
    its version."""
    store = EventStore("memory://", snapshot_interval=10)
    store.encoded_maps.min_entries = 1  # every map kept, however small
    service = CommandService(store, index_key="k")
    survivor, next_order = register(service), 0
    duplicate: UUID | None = None
    merged = False
    for step in steps:
        if step in ("purchases", "a few"):
            count = 15 if step == "purchases" else 3  # due for a snapshot, or not yet
            service.execute_batch(purchases(survivor, next_order, count), CTX)
            next_order += count
        elif step == "refund" and next_order:
            order = f"{next_order - 1:07d}-".ljust(100, "x")
            service.execute_batch([m.RefundPurchase(customer_id=survivor, order_id=order)], CTX)
        elif step == "merge" and not merged:
            if duplicate is None:
                duplicate = register(service, "Twin")
                service.execute_batch(purchases(duplicate, 10**6 + next_order, 12), CTX)
            service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
            merged = True
        elif step == "unmerge" and merged:
            assert duplicate is not None
            service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
            merged = False
        elif step == "erase duplicate" and duplicate is not None and not merged:
            service.execute(m.EraseCustomer(customer_id=duplicate), CTX)
            duplicate = None
        elif step == "reload":
            service.cache.drop([survivor])
        loaded = store.customer(survivor)
        assert vars(loaded) == vars(fold(store, survivor))
    assert store.snapshots is not None
    for snapshot in store.snapshots.get(survivor, desc=True, limit=1):
        assert isinstance(snapshot, Snapshot)
        at = snapshot.originator_version
        assert vars(snapshot.mutate(None)) == vars(fold(store, survivor, at))
    store.close()


def test_the_store_writes_the_bytes_of_a_whole_encoding(
    growing: tuple[EventStore, CommandService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every stored snapshot (its maps spliced from kept bytes) is, byte for byte, the stored
    form of the same snapshot encoded whole (the seal's nonce fixed, so both seal alike)."""
    store, service = growing
    monkeypatch.setattr(personal_data, "new_nonce", lambda: bytes(NONCE_BYTES))
    states: list[dict[str, Any]] = []
    substitute = store.encoded_maps.substitute

    def stashing(customer_id: UUID, state: dict[str, Any]) -> None:
        # the maps as they are now (the aggregate's grow on in place; entries are replaced)
        states.append({k: dict(v) if isinstance(v, dict) else v for k, v in state.items()})
        substitute(customer_id, state)

    monkeypatch.setattr(store.encoded_maps, "substitute", stashing)
    customer_id = register(service)
    service.execute(m.UpdateProfile(customer_id=customer_id, changes={"phone": "+4930901"}), CTX)
    for batch in range(7):
        service.execute_batch(purchases(customer_id, batch * 100, 100), CTX)
    assert store.snapshots is not None
    rows = store.snapshots.recorder.select_events(customer_id)
    assert len(rows) == len(states) == 4
    for row, state in zip(rows, states, strict=True):
        stored = store.mapper.to_domain_event(row)
        assert isinstance(stored, Snapshot)
        whole = Snapshot(
            originator_id=customer_id,
            originator_version=stored.originator_version,
            timestamp=stored.timestamp,
            topic=stored.topic,
            state=state,
        )
        assert store.mapper.to_stored_event(whole).state == row.state
