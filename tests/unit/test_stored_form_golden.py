"""The stored form of events, frozen as bytes: at a fixed data key and nonce, sealing and
encoding (:class:`infra.personal_data.PersonalDataMapper`) must give exactly these bytes, so a
change to the mapper cannot silently change what the store holds (and what hash links, the
checked cache's digests and readers of old rows rely on). Each golden form also opens back
to its event."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.utils import get_topic

from domain import events as ev
from domain.customer import Customer
from infra import personal_data
from infra.data_keys import MemoryDataKeys
from infra.store import EventStore

CUSTOMER = UUID("6f1c9a52-3b7e-4d21-9c0a-5e8f7b6a4d13")
DATA_KEY = bytes(range(32))
NONCE = bytes(range(100, 112))
AT = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
META: dict[str, Any] = {
    "originator_id": CUSTOMER,
    "timestamp": AT,
    "actor": "golden",
    "correlation_id": "corr-1",
    "causation_id": None,
    "occurred_at": AT,
}
GOLDEN: list[tuple[str, bytes]] = [
    (
        "Registered",
        b'{"timestamp":{"_type_":"datetime","_data_":"2026-12-01T06:00:00+00:00"},"originator_topic'
        b'":"domain.customer:Customer","actor":"golden","correlation_id":"corr-1","causation_id":nu'
        b'll,"occurred_at":{"_type_":"datetime","_data_":"2026-12-01T06:00:00+00:00"},"source":"gol'
        b'den","lifecycle_stage":"prospect","_sealed":"v1.ZGVmZ2hpamtsbW5vMzmwBxSMdKQcIzuJ-ikFiyeuZ'
        b"2nuTt9QwrzNIZeBn2r1jSGAKWr6aY2fHRGeLaftN3n5k1Q4KEqPhcmlzbveqHzlvnz0cRli5AOJYWz3LpT-kxDDtE"
        b'ifgpg-8VaT5A==","class_version":3}',
    ),
    (
        "Tagged",
        b'{"timestamp":{"_type_":"datetime","_data_":"2026-12-01T06:00:00+00:00"},"actor":"golden",'
        b'"correlation_id":"corr-1","causation_id":null,"occurred_at":{"_type_":"datetime","_data_"'
        b':"2026-12-01T06:00:00+00:00"},"tag":"vip"}',
    ),
    (
        "Contacted",
        b'{"timestamp":{"_type_":"datetime","_data_":"2026-12-01T06:00:00+00:00"},"actor":"golden",'
        b'"correlation_id":"corr-1","causation_id":null,"occurred_at":{"_type_":"datetime","_data_"'
        b':"2026-12-01T06:00:00+00:00"},"channel":"phone","direction":"inbound","kind":"call","_sea'
        b'led":"v1.ZGVmZ2hpamtsbW5vMzmtExSEN-xHQGXKsQsFijHia3OrH5YR1bTYaoYL6elZDT_mm24eCH6syJbb"}',
    ),
    (
        "PurchaseRecorded",
        b'{"timestamp":{"_type_":"datetime","_data_":"2026-12-01T06:00:00+00:00"},"actor":"golden",'
        b'"correlation_id":"corr-1","causation_id":null,"occurred_at":{"_type_":"datetime","_data_"'
        b':"2026-12-01T06:00:00+00:00"},"order_id":"o-1","amount":{"_type_":"decimal","_data_":"12.'
        b'50"},"currency":"EUR","items":[]}',
    ),
    (
        "Snapshot",
        b'{"timestamp":{"_type_":"datetime","_data_":"2026-12-01T06:00:00+00:00"},"topic":"domain.c'
        b'ustomer:Customer","state":{"_created_on":{"_type_":"datetime","_data_":"2026-12-01T06:00:'
        b'00+00:00"},"_modified_on":{"_type_":"datetime","_data_":"2026-12-01T06:00:00+00:00"},"reg'
        b'istered_at":{"_type_":"datetime","_data_":"2026-12-01T06:00:00+00:00"},"source":"golden",'
        b'"tags":["vip"],"consents":{},"lifecycle_stage":"prospect","status":"active","status_befor'
        b'e_merge":null,"churn_reason":null,"purchases":{"o-1":{"amount":{"_type_":"decimal","_data'
        b'_":"12.50"},"currency":"EUR","occurred_at":{"_type_":"datetime","_data_":"2026-12-01T06:0'
        b'0:00+00:00"}}},"refunded":{},"contacts_count":1,"last_contact_at":{"_type_":"datetime","_'
        b'data_":"2026-12-01T06:00:00+00:00"},"nps":null,"csat":null,"merged_into":null,"points":0,'
        b'"tier":null,"campaigns":{},"invalid_channels":[],"class_version":4,"_sealed":"v1.ZGVmZ2hp'
        b"amtsbW5vMzmwBxSMdKQcIzuJ-ikFiyeuZ2nuTt9QwrzNIZeBn2r1jSGAKWr6aY2fHRGeLaftN3n5k1Q4KEqPhcmlz"
        b'bveqHzlvnz0cRli5AOJYWz3LZDSkM5ihwxdeoSQIoiqcw=="}}',
    ),
]


def _event(cls: Any, version: int, **fields: Any) -> Any:
    """One of the customer's events at ``version`` (the meta of :data:`META`)."""
    return cls(**META, originator_version=version, **fields)


def _story() -> list[Any]:
    """A registration (sealed), a tag (clear), a contact (sealed), a purchase (clear), and the
    customer's snapshot after them (sealed state)."""
    events: list[Any] = [
        _event(
            ev.Registered,
            1,
            originator_topic=get_topic(Customer),
            name="Ada Lovelace",
            email="ada@example.com",
            phone=None,
            attributes={"tier": "gold"},
            source="golden",
            lifecycle_stage="prospect",
            external_ids={},
        ),
        _event(ev.Tagged, 2, tag="vip"),
        _event(
            ev.Contacted,
            3,
            channel="phone",
            direction="inbound",
            kind="call",
            subject=None,
            summary="knows my secret",
            outcome=None,
        ),
        _event(
            ev.PurchaseRecorded,
            4,
            order_id="o-1",
            amount=Decimal("12.50"),
            currency="EUR",
            items=[],
        ),
    ]
    customer: Any = None
    for event in events:
        customer = event.mutate(customer)
    taken = Snapshot.take(customer)
    snapshot = Snapshot(  # take()'s timestamp is now: the same snapshot at a fixed time
        originator_id=taken.originator_id,
        originator_version=taken.originator_version,
        timestamp=AT,
        topic=taken.topic,
        state=taken.state,
    )
    return [*events, snapshot]


def test_the_stored_form_is_frozen(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(personal_data, "new_nonce", lambda: NONCE)
    keys = store.data_keys
    assert isinstance(keys, MemoryDataKeys)
    keys.rows[CUSTOMER.hex] = (CUSTOMER.hex, *keys.master.wrap(CUSTOMER.hex, DATA_KEY))
    story = _story()
    assert [type(e).__name__ for e in story] == [name for name, _ in GOLDEN]
    for event, (name, golden) in zip(story, GOLDEN, strict=True):
        stored = store.mapper.to_stored_event(event)
        assert stored.state == golden, name
        assert vars(store.mapper.to_domain_event(stored)) == vars(event), name
