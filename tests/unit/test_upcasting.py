"""A stored v1 ``customer.registered`` (before ``source`` and ``lifecycle_stage``) still loads."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from commands import messages as m
from commands.service import CommandService, Context
from domain.customer import Customer
from domain.events import Registered
from infra.store import EventStore


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
