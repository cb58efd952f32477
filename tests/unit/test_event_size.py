"""No event outgrows the documented bound (issue 13, item 2, the write side).

* a merge (and its unmerge) records what moves in parts, each far below ``MAX_EVENT_BYTES``,
  which fold to the same state, profile and time travel as one event did, and an unmerge
  still gives back exactly what moved;
* any other command whose event would exceed the bound is refused alone
  (``event-too-large``), with nothing of it recorded, while the rest of its batch commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from domain import errors
from domain.customer import Customer
from domain.event_base import ENVELOPE_OVERHEAD_BYTES, MAX_EVENT_BYTES, Meta
from domain.events import CustomerEvent, DuplicateAbsorbed
from domain.merging import PURCHASES_PER_PART, merge, unmerge
from infra.envelope import Envelope
from infra.store import EventStore
from tests.unit.merge_support import folded
from tests.unit.test_properties import assert_profile_matches, fold
from tests.unit.test_service import register

META = Meta("size-test", "corr", None, datetime(2026, 1, 2, tzinfo=UTC))


def stored_sizes(store: EventStore, events: Sequence[Any]) -> list[tuple[str, int, int]]:
    """(type, stored bytes, envelope bytes) of events as the store and the relay would write
    them (personal fields sealed; the envelope with the largest position and both hashes)."""
    sizes = []
    for event in events:
        stored = store.personal_mapper.to_stored_event(event)
        sealed = store.personal_mapper.to_sealed_event(stored)
        assert isinstance(sealed, CustomerEvent)
        envelope = Envelope.from_event(sealed, 2**62, ("0" * 64, "f" * 64))
        sizes.append((event.TYPE, len(stored.state), len(envelope.to_bytes())))
    return sizes


@pytest.mark.parametrize(
    "order_id",
    [
        lambda i: f"{i:0100d}",  # the report: 7,000 purchases with 100-character order ids
        lambda i: f"{i:05d}" + "\x01" * 95,  # every character a 6-byte JSON escape
    ],
    ids=["ascii", "escaped"],
)
def test_the_reported_merge_is_recorded_in_parts_below_the_bound(
    store: EventStore, order_id: Any
) -> None:
    survivor = Customer.register(uuid4(), META, name="Sam")
    duplicate = Customer.register(uuid4(), META, name="Dee", email="dee@example.com")
    for i in range(7000):
        duplicate.record_purchase(
            META, order_id=order_id(i), amount=Decimal("99999.9999"), currency="EUR", items=[]
        )
    survivor.collect_events()
    merge(survivor, duplicate, META)
    parts = [e for e in survivor.collect_events() if isinstance(e, DuplicateAbsorbed)]
    assert [(p.part, p.parts) for p in parts] == [(i, 14) for i in range(1, 15)]
    assert sum(len(p.purchases) for p in parts) == 7000 == len(survivor.purchases)
    assert [p.email for p in parts] == ["dee@example.com"] + [None] * 13
    sizes = stored_sizes(store, parts)
    assert max(size for _, size, _ in sizes) <= MAX_EVENT_BYTES
    assert max(envelope for _, _, envelope in sizes) <= MAX_EVENT_BYTES + ENVELOPE_OVERHEAD_BYTES
    assert len(parts[0].purchases) == PURCHASES_PER_PART

    unmerge(survivor, duplicate, META)
    given_back = survivor.collect_events()
    assert [(e.role, e.part, e.parts) for e in given_back] == [  # type: ignore[attr-defined]
        ("survivor", i, 14) for i in range(1, 15)
    ]
    assert max(size for _, size, _ in stored_sizes(store, given_back)) <= MAX_EVENT_BYTES
    assert (survivor.purchases, survivor.email, survivor.absorbed) == ({}, None, {})


def grow(service: CommandService, ctx: Context, customer: UUID, orders: int, prefix: str) -> None:
    for start in range(0, orders, 1000):
        outcomes = service.execute_batch(
            [
                m.RecordPurchase(
                    customer_id=customer,
                    order_id=f"{prefix}-{i:05d}-" + "x" * 80,
                    amount=f"{i % 97}.25",
                    currency="EUR" if i % 3 else "USD",
                )
                for i in range(start, min(start + 1000, orders))
            ],
            ctx,
        )
        assert {o.status for o in outcomes} == {"accepted"}


def test_merge_and_unmerge_in_parts_fold_like_one_event(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    survivor = register(service, ctx, name="Sam", phone="+4930901820")
    duplicate = register(service, ctx, name="Dee", email="dee@example.com")
    service.execute(m.TagCustomer(customer_id=survivor, tag="vip"), ctx)
    for tag in ("newsletter", "vip", "b2b"):
        service.execute(m.TagCustomer(customer_id=duplicate, tag=tag), ctx)
    service.execute(
        m.RecordContact(customer_id=duplicate, channel="email", direction="inbound"), ctx
    )
    grow(service, ctx, survivor, 3, "S")
    grow(service, ctx, duplicate, 2 * PURCHASES_PER_PART + 17, "D")
    before = store.customer(survivor)
    profile_before = folded(store, survivor)
    dup_before = store.customer(duplicate)

    outcome = service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)

    assert outcome.events == ("customer.duplicate_absorbed",) * 3 + ("customer.merged_into",)
    merged = store.customer(survivor)
    assert vars(merged) == vars(fold(store, survivor))  # snapshots and folds agree
    assert merged.tags == ["vip", "newsletter", "b2b"]
    assert merged.purchases == {**before.purchases, **dup_before.purchases}
    assert (merged.email, merged.phone) == ("dee@example.com", "+4930901820")
    assert merged.contacts_count == 1
    record = merged.absorbed[str(duplicate)]
    assert record["purchases"] == dup_before.purchases and record["tags"] == ["newsletter", "b2b"]
    assert_profile_matches(store, merged)  # the profile fold (live, rebuild, time travel)
    state = folded(store, survivor)
    assert state["purchases"]["count"] == 3 + 2 * PURCHASES_PER_PART + 17
    totals = merged.purchase_totals()
    assert state["purchases"]["total"] == {c: str(t) for c, t in sorted(totals.items())}
    for version in range(before.version + 1, merged.version + 1):  # time travel between parts
        assert vars(store.customer(survivor, version=version)) == vars(
            fold(store, survivor, version)
        )

    undone = service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)

    assert undone.events == ("customer.unmerged",) * 4
    restored = store.customer(survivor)
    assert (restored.tags, restored.purchases, restored.contacts_count) == (
        before.tags,
        before.purchases,
        before.contacts_count,
    )
    assert (restored.email, restored.phone, restored.absorbed) == (None, "+4930901820", {})
    assert_profile_matches(store, restored)
    moving = ("version", "position", "updated_at")
    after = folded(store, survivor)
    assert {k: v for k, v in after.items() if k not in moving} == {
        k: v for k, v in profile_before.items() if k not in moving
    }
    back = store.customer(duplicate)
    assert (back.status, back.purchases, back.email) == (
        "active",
        dup_before.purchases,
        "dee@example.com",
    )
    assert_profile_matches(store, back)


def test_an_event_above_the_bound_is_refused_alone_and_nothing_of_it_is_recorded(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    customer = register(service, ctx, name="Ada")
    # The edge bounds every field; the widest legal payload left is 100 attributes of 1,000
    # four-byte characters, which sealing grows past the bound.
    wide = {f"line_{i}": "\U0001f600" * 1000 for i in range(100)}
    head = store.head()
    with pytest.raises(errors.EventTooLarge) as refused:
        service.execute(m.UpdateProfile(customer_id=customer, changes={"attributes": wide}), ctx)
    assert refused.value.code == "event-too-large"
    assert refused.value.details["event_type"] == "customer.profile_updated"
    assert refused.value.details["size"] > refused.value.details["limit"] == MAX_EVENT_BYTES
    assert store.head() == head and store.customer(customer).version == 1

    batch = [
        m.TagCustomer(customer_id=customer, tag="first"),
        m.UpdateProfile(customer_id=customer, changes={"attributes": wide}),
        m.RecordPurchase(customer_id=customer, order_id="small", amount="1", currency="EUR"),
    ]
    outcomes = service.execute_batch(batch, ctx)
    assert [o.status for o in outcomes] == ["accepted", "rejected", "accepted"]
    assert outcomes[1].to_dict()["problem"]["code"] == "event-too-large"
    after = store.customer(customer)
    assert (after.tags, list(after.purchases), after.lifecycle_stage, after.attributes) == (
        ["first"],
        ["small"],
        "new",  # the first purchase that was recorded moved the prospect on, once
        {},
    )
    assert [e.TYPE for _, e in store.history(customer)][1:] == [
        "customer.tagged",
        "customer.purchase_recorded",
        "customer.lifecycle_stage_changed",
    ]


def test_sealed_personal_data_counts_too_and_a_refused_registration_reserves_nothing(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    wide = {f"line_{i}": "😀" * 1000 for i in range(100)}  # 400 kB of text, sealed: ~540 kB
    with pytest.raises(errors.EventTooLarge):
        service.execute(
            m.RegisterCustomer(name="Wide", email="wide@example.com", attributes=wide), ctx
        )
    customer = register(service, ctx, name="Narrow", email="wide@example.com")  # still free
    with pytest.raises(errors.EventTooLarge) as refused:
        service.execute(m.UpdateProfile(customer_id=customer, changes={"attributes": wide}), ctx)
    assert refused.value.details["event_type"] == "customer.profile_updated"
    assert store.customer(customer).version == 1


def test_an_event_at_the_bound_has_an_envelope_within_the_documented_overhead(
    store: EventStore,
) -> None:
    """The envelope adds at most ``ENVELOPE_OVERHEAD_BYTES`` to the stored bound (what
    producer and topic limits must allow), and one byte more is refused."""
    customer = Customer.register(uuid4(), META, name="Ada", email="ada@example.com")
    customer.collect_events()

    def purchase(padding: int) -> Any:
        customer.record_purchase(
            META,
            order_id=f"o-{padding}",
            amount=Decimal("999999999999.9999") - 1,
            currency="EUR",
            items=[{"note": "x" * padding}],
        )
        return customer.collect_events()[0]

    with pytest.raises(errors.EventTooLarge) as measured:
        stored_sizes(store, [purchase(MAX_EVENT_BYTES)])
    fixed = measured.value.details["size"] - MAX_EVENT_BYTES  # bytes besides the padding
    exact = MAX_EVENT_BYTES - fixed
    ((_, size, envelope),) = stored_sizes(store, [purchase(exact)])
    assert size == MAX_EVENT_BYTES
    assert envelope <= MAX_EVENT_BYTES + ENVELOPE_OVERHEAD_BYTES
    with pytest.raises(errors.EventTooLarge):
        stored_sizes(store, [purchase(exact + 1)])
