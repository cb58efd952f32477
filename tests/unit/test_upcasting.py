"""Stored events of earlier class versions still load and fold: ``customer.registered`` v1
(before ``source`` and ``lifecycle_stage``), merge events v1 (before ``part``/``parts``)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from commands import messages as m
from commands.service import CommandService, Context
from consumers.store_feed import StoreFeed
from domain.customer import Customer
from domain.events import DuplicateAbsorbed, Registered, Unmerged
from infra.store import EventStore
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
    assert orjson.loads(stored.state)["class_version"] == 2


def test_v1_merge_events_without_parts_still_load_and_fold(store: EventStore) -> None:
    """``duplicate_absorbed`` / ``unmerged`` stored before they came in parts (one event each,
    no ``part``/``parts``) load, fold and project exactly as the same history written today."""
    service = CommandService(store, default_region="DE", index_key="k")
    ctx = Context(actor="t")
    survivor = service.execute(m.RegisterCustomer(name="Sam"), ctx).customer_id
    duplicate = service.execute(
        m.RegisterCustomer(name="Dee", email="dee@example.com", phone="+4930901820"), ctx
    ).customer_id
    assert survivor is not None and duplicate is not None
    service.execute(m.TagCustomer(customer_id=duplicate, tag="vip"), ctx)
    service.execute(
        m.RecordPurchase(customer_id=duplicate, order_id="D-1", amount="5", currency="EUR"), ctx
    )
    merge = m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate)
    service.execute(merge, ctx)
    service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    service.execute(merge, ctx)

    old = EventStore("memory://")
    old.personal.keys = store.personal.keys  # the same customers' keys: sealed data opens
    v1_topics = {get_topic(DuplicateAbsorbed), get_topic(Unmerged)}
    rewritten = 0
    for n in store.notifications(0, 1000):
        state = orjson.loads(n.state)
        if n.topic in v1_topics:
            for key in ("class_version", "part", "parts"):
                state.pop(key)
            rewritten += 1
        old.recorder.insert_events(
            [StoredEvent(n.originator_id, n.originator_version, n.topic, orjson.dumps(state))]
        )
    assert rewritten == 4  # absorbed, unmerged on both sides, absorbed again
    for customer in (survivor, duplicate):
        assert vars(old.customer(customer)) == vars(store.customer(customer))
        assert folded(old, customer) == folded(store, customer)
    assert old.customer(survivor).absorbed[str(duplicate)]["email"] == "dee@example.com"
    upcast = [e for e in StoreFeed(old).read(0, 1000) if e.type == "customer.duplicate_absorbed"]
    assert [(e.data["part"], e.data["parts"]) for e in upcast] == [(1, 1), (1, 1)]
    old.close()
