"""Stored events of earlier class versions still load and fold: ``customer.registered`` v1
(before ``source`` and ``lifecycle_stage``) and v2 (before ``external_ids``),
``customer.profile_updated`` v1 (before ``external_ids``), merge events v1 (before
``part``/``parts``), and customer snapshots v1 (before ``external_ids`` and
``registered_at``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import orjson
import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from commands import messages as m
from commands.service import CommandService, Context
from consumers.store_feed import StoreFeed
from domain.customer import Customer
from domain.events import (
    DuplicateAbsorbed,
    Erased,
    PointsEarned,
    ProfileUpdated,
    Registered,
    TierChanged,
    Unmerged,
)
from infra.store import EventStore
from projections.loyalty import loyalty_view
from tests.unit.merge_support import folded


def test_v1_registered_event_is_upcast_on_load(store: EventStore) -> None:
    customer_id = uuid4()
    v1_state = {
        "timestamp": {"_type_": "datetime", "_data_": datetime(2023, 1, 2, tzinfo=UTC).isoformat()},
        "originator_topic": get_topic(Customer),
        "actor": "legacy-import",
        "correlation_id": "c",
        "causation_id": None,
        "occurred_at": {
            "_type_": "datetime",
            "_data_": datetime(2023, 1, 2, tzinfo=UTC).isoformat(),
        },
        "name": "Old Timer",
        "email": None,
        "phone": None,
        "attributes": {},
    }  # no "class_version" key: that is how eventsourcing marks version 1
    store.recorder.insert_events(
        [StoredEvent(customer_id, 1, get_topic(Registered), orjson.dumps(v1_state))]
    )
    customer = store.customer(customer_id)
    assert (customer.name, customer.source, customer.lifecycle_stage) == (
        "Old Timer",
        None,
        "prospect",
    )
    stored_now = store.recorder.select_events(customer_id)[0]
    assert b'"class_version"' not in stored_now.state  # history is never rewritten


def test_new_events_are_stored_with_their_class_version(store: EventStore) -> None:
    outcome = CommandService(store).execute(m.RegisterCustomer(name="New"), Context(actor="t"))
    assert outcome.customer_id
    stored = store.recorder.select_events(outcome.customer_id)[0]
    assert orjson.loads(stored.state)["class_version"] == 3


def test_events_and_snapshots_from_before_external_ids_load_and_fold(store: EventStore) -> None:
    """A v2 registration and a v1 profile update (no ``external_ids``), then a v1 snapshot
    (no ``external_ids``, no ``registered_at``): the customer loads with none held, registered
    when the registration was recorded, and takes new commands."""
    service = CommandService(store, default_region="DE", index_key="k")
    ctx = Context(actor="t")
    customer = service.execute(m.RegisterCustomer(name="Old", email="o@example.com"), ctx)
    assert customer.customer_id is not None
    cid = customer.customer_id
    service.execute(m.UpdateProfile(customer_id=cid, changes={"name": "Older"}), ctx)
    old = EventStore("memory://", snapshot_interval=1)
    old.personal.keys = store.personal.keys
    for n in store.notifications(0, 1000):
        state = orjson.loads(n.state)
        if n.topic == get_topic(Registered):
            state["class_version"] = 2
            state.pop("external_ids", None)
        if n.topic == get_topic(ProfileUpdated):
            state.pop("class_version")
            state.pop("external_ids", None)
        old.recorder.insert_events(
            [StoredEvent(n.originator_id, n.originator_version, n.topic, orjson.dumps(state))]
        )
    loaded = old.customer(cid)
    assert (loaded.name, loaded.external_ids) == ("Older", {})
    assert loaded.registered_at == next(old.customer_events(cid)).occurred_at
    assert folded(old, cid)["external_ids"] == {}
    snapshot = Snapshot.take(loaded)
    state = dict(snapshot.state)
    for key in ("class_version", "external_ids", "registered_at"):
        state.pop(key)
    assert old.snapshots is not None
    v1 = Snapshot(
        originator_id=cid,
        originator_version=loaded.version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state=state,
    )
    old.snapshots.recorder.insert_events([old.mapper.to_stored_event(v1)])
    from_snapshot: object = old.repository.get(cid)
    assert isinstance(from_snapshot, Customer)
    assert from_snapshot.external_ids == {}
    assert from_snapshot.registered_at == state["_created_on"]
    again = CommandService(old, default_region="DE", index_key="k")
    again.execute(m.UpdateProfile(customer_id=cid, changes={"external_ids": {"shop": "1"}}), ctx)
    assert old.customer(cid).external_ids == {"shop": "1"}
    old.close()


def _without_owners(customer: Customer) -> dict[str, Any]:
    state = dict(vars(customer))
    state["absorbed"] = {
        duplicate: {k: v for k, v in record.items() if not k.endswith("_owner")}
        for duplicate, record in customer.absorbed.items()
    }
    return state


def test_v1_merge_and_erasure_events_still_load_and_fold(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``duplicate_absorbed`` / ``unmerged`` stored before they came in parts (one event each,
    no ``part``/``parts``/``data_owner``, sealed with the survivor's own key) and
    ``customer.erased`` before ``copies_at`` load, fold and project as the same history today."""
    for event_class in (DuplicateAbsorbed, Unmerged):  # v1 sealed with the survivor's key
        monkeypatch.setattr(event_class, "KEY_OWNER", None)
    service = CommandService(store, default_region="DE", index_key="k")
    ctx = Context(actor="t")
    survivor, duplicate, gone = (
        service.execute(m.RegisterCustomer(name=name, email=email, phone=phone), ctx).customer_id
        for name, email, phone in (
            ("Sam", None, None),
            ("Dee", "dee@example.com", "+4930901820"),
            ("Gone", "gone@example.com", None),
        )
    )
    assert survivor is not None and duplicate is not None and gone is not None
    service.execute(m.TagCustomer(customer_id=duplicate, tag="vip"), ctx)
    service.execute(
        m.RecordPurchase(customer_id=duplicate, order_id="D-1", amount="5", currency="EUR"), ctx
    )
    merge = m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate)
    service.execute(merge, ctx)
    service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    service.execute(merge, ctx)
    service.execute(m.EraseCustomer(customer_id=gone), ctx)
    expected = {
        c: (_without_owners(store.customer(c)), folded(store, c))
        for c in (survivor, duplicate, gone)
    }
    monkeypatch.undo()

    old = EventStore("memory://")
    old.personal.keys = store.personal.keys  # the same customers' keys: sealed data opens
    added = {
        get_topic(DuplicateAbsorbed): ("part", "parts", "data_owner", "moved"),
        get_topic(Unmerged): ("part", "parts", "data_owner", "moved"),
        get_topic(Erased): ("copies_at",),
    }
    rewritten = 0
    for n in store.notifications(0, 1000):
        state = orjson.loads(n.state)
        if n.topic in added:
            for key in ("class_version", *added[n.topic]):
                state.pop(key)
            rewritten += 1
        old.recorder.insert_events(
            [StoredEvent(n.originator_id, n.originator_version, n.topic, orjson.dumps(state))]
        )
    assert rewritten == 5  # absorbed, unmerged on both sides, absorbed again, erased
    for customer, (state, profile_state) in expected.items():
        assert _without_owners(old.customer(customer)) == state
        assert folded(old, customer) == profile_state
    assert old.customer(survivor).absorbed[str(duplicate)]["email"] == "dee@example.com"
    upcast = [e for e in StoreFeed(old).read(0, 1000) if e.type == "customer.duplicate_absorbed"]
    assert [(e.data["part"], e.data["parts"], e.data["data_owner"]) for e in upcast] == [
        (1, 1, None),
        (1, 1, None),
    ]
    assert [
        e.data["copies_at"] for e in StoreFeed(old).read(0, 1000) if e.type == "customer.erased"
    ] == [[]]
    # merging on: what the survivor holds from an upcast record counts as the survivor's own
    old_service = CommandService(old, default_region="DE", index_key="k")
    top = old_service.execute(m.RegisterCustomer(name="Top"), ctx).customer_id
    assert top is not None
    old_service.execute(m.MergeCustomers(customer_id=top, duplicate_id=survivor), ctx)
    assert old.customer(top).email == "dee@example.com"
    moved = [e for _, e in old.history(top) if isinstance(e, DuplicateAbsorbed)]
    assert [(e.email, e.data_owner) for e in moved] == [("dee@example.com", str(survivor))]
    old.close()


def test_loyalty_events_and_snapshots_from_before_lots_and_refunds_load(store: EventStore) -> None:
    """``points_earned`` v1 (no ``order_id``/``expires_at``: a lot that never expires),
    ``tier_changed`` v1 (no ``reason``/``spend``) and a v2 snapshot (no ``refunded``) load;
    the customer then takes a refund."""
    service = CommandService(store)
    ctx = Context(actor="t")
    cid = service.execute(m.RegisterCustomer(name="Old"), ctx).customer_id
    assert cid is not None
    for command in (
        m.EarnPoints(customer_id=cid, points=7),
        m.ChangeTier(customer_id=cid, tier="gold"),
        m.RecordPurchase(customer_id=cid, order_id="o-1", amount="5", currency="EUR"),
    ):
        service.execute(command, ctx)
    old = EventStore("memory://", snapshot_interval=1)
    old.personal.keys = store.personal.keys
    for n in store.notifications(0, 1000):
        state = orjson.loads(n.state)
        if n.topic in (get_topic(PointsEarned), get_topic(TierChanged)):
            state.pop("class_version")
            for key in ("order_id", "expires_at", "reason", "spend"):
                state.pop(key, None)
        old.recorder.insert_events(
            [StoredEvent(n.originator_id, n.originator_version, n.topic, orjson.dumps(state))]
        )
    view = loyalty_view(old.customer_events(cid))
    assert view["lots"][0]["order_id"] is None and view["lots"][0]["expires_at"] is None
    assert view["tier"] == {
        "name": "gold",
        "since": view["tier"]["since"],
        "reason": None,
        "spend": None,
    }
    loaded = old.customer(cid)
    snapshot = Snapshot.take(loaded)
    state = {k: v for k, v in snapshot.state.items() if k != "refunded"}
    state["class_version"] = 2
    assert old.snapshots is not None
    v2 = Snapshot(
        originator_id=cid,
        originator_version=loaded.version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state=state,
    )
    old.snapshots.recorder.insert_events([old.mapper.to_stored_event(v2)])
    from_snapshot: object = old.repository.get(cid)
    assert isinstance(from_snapshot, Customer) and from_snapshot.refunded == {}
    CommandService(old).execute(m.RefundPurchase(customer_id=cid, order_id="o-1"), ctx)
    assert list(old.customer(cid).refunded) == ["o-1"] and old.customer(cid).purchases == {}
    old.close()
