"""Personal data is sealed with the customer's own key, opened for trusted readers, and gone
for good once the customer is erased (crypto-shredding)."""

from __future__ import annotations

import base64
from dataclasses import replace
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import Mapper, StoredEvent

from commands import messages as m
from commands.service import CommandService, Context
from consumers.store_feed import StoreFeed
from domain.customer import Customer
from domain.personal import key_owner
from infra.data_keys import CustomerKeyShredded, MasterKeyMissing, MasterKeys, new_master_key
from infra.envelope import SEALED
from infra.personal_data import SealBroken, shredded
from infra.store import EventStore

PII = ("Ada Lovelace", "ada@example.com", "+4915112345678", "12 Analytical St", "knows my secret")


def _story(service: CommandService, ctx: Context) -> UUID:
    outcome = service.execute(
        m.RegisterCustomer(
            name=PII[0],
            email=PII[1],
            phone=PII[2],
            attributes={"address": PII[3], "segment": "b2c-retail-households"},
        ),
        ctx,
    )
    cid = outcome.customer_id
    assert cid is not None
    service.execute(
        m.RecordContact(customer_id=cid, channel="phone", direction="inbound", summary=PII[4]), ctx
    )
    service.execute(m.RecordFeedback(customer_id=cid, nps=9, comment=PII[4]), ctx)
    service.execute(
        m.RecordPurchase(customer_id=cid, order_id="o-1", amount=Decimal("12.50"), currency="EUR"),
        ctx,
    )
    service.execute(m.UpdateProfile(customer_id=cid, changes={"name": "Ada King"}), ctx)
    return cid


def _stored_bytes(store: EventStore) -> bytes:
    return b"".join(n.state for n in store.notifications(0, 10_000))


def _snapshot_bytes(store: EventStore, cid: UUID) -> bytes:
    assert store.snapshots is not None
    return b"".join(store.mapper.to_stored_event(s).state for s in store.snapshots.get(cid))


def test_personal_fields_are_stored_and_published_only_as_ciphertext(
    store: EventStore, service: CommandService, ctx: Context
) -> None:
    cid = _story(service, ctx)
    stored = _stored_bytes(store)
    assert all(value.encode() not in stored for value in PII)
    # facts stay clear; attributes are sealed
    assert b"12.5" in stored and b"b2c-retail-households" not in stored
    sealed = StoreFeed(store).read_sealed(0, 100)
    published = b"".join(e.to_bytes() for e in sealed)
    assert all(value.encode() not in published for value in PII)
    registered = sealed[0]
    assert registered.sealed is not None and "name" not in registered.data
    assert registered.data["lifecycle_stage"] == "prospect"
    opened = StoreFeed(store).read(0, 100)
    assert opened[0].data["name"] == PII[0] and opened[0].data["attributes"]["address"] == PII[3]
    assert opened[0].sealed is None
    assert store.personal.open_envelope(sealed[1]).data["summary"] == PII[4]
    customer = store.customer(cid)
    assert (customer.name, customer.email, customer.phone) == ("Ada King", PII[1], PII[2])


def test_snapshots_seal_personal_state_too(
    store: EventStore, service: CommandService, ctx: Context
) -> None:
    cid = _story(service, ctx)  # five events: the snapshot interval of the unit store
    snapshots = _snapshot_bytes(store, cid)
    assert snapshots and all(value.encode() not in snapshots for value in PII)
    assert store.customer(cid).attributes["address"] == PII[3]


def test_a_token_moved_to_another_event_does_not_open(
    store: EventStore, service: CommandService, ctx: Context
) -> None:
    _story(service, ctx)
    contact, feedback = StoreFeed(store).read_sealed(0, 100)[1:3]
    assert contact.sealed is not None
    with pytest.raises(SealBroken):
        store.personal.open_envelope(replace(feedback, sealed=contact.sealed))
    raw = base64.urlsafe_b64decode(contact.sealed.removeprefix("v1."))
    flipped = "v1." + base64.urlsafe_b64encode(raw[:-1] + bytes([raw[-1] ^ 1])).decode()
    with pytest.raises(SealBroken):
        store.personal.open_envelope(replace(contact, sealed=flipped))


def test_erasure_shreds_the_key_so_history_reads_redacted(
    store: EventStore, service: CommandService, ctx: Context
) -> None:
    cid = _story(service, ctx)
    keep = service.execute(m.RegisterCustomer(name="Grace Hopper", email="grace@example.com"), ctx)
    service.execute(m.EraseCustomer(customer_id=cid, reason="request"), ctx)
    assert store.data_keys.for_reading(cid.hex) is None
    with pytest.raises(CustomerKeyShredded):
        store.data_keys.for_writing([cid.hex])
    opened = [e for e in StoreFeed(store).read(0, 100) if e.customer_id == cid]
    assert opened[0].data["name"] is None and opened[0].data["attributes"] == {}
    assert opened[1].data["summary"] is None and opened[2].data["comment"] is None
    assert opened[2].data["nps"] == 9 and opened[3].data["amount"] == "12.50"  # facts survive
    history = [event for _, event in store.history(cid)]
    assert history[0].name is None and history[-1].TYPE == "customer.erased"  # type: ignore[attr-defined]
    erased = store.customer(cid)
    assert (erased.name, erased.email, erased.status) == (None, None, "erased")
    assert keep.customer_id is not None and store.customer(keep.customer_id).name == "Grace Hopper"


def test_rotation_rewraps_every_key_without_touching_events(
    store: EventStore, service: CommandService, ctx: Context
) -> None:
    _story(service, ctx)
    before = _stored_bytes(store)
    old = store.data_keys.master
    new = MasterKeys.parse(
        f"new:{new_master_key()},{old.current}:{base64.b64encode(old.keys[old.current]).decode()}"
    )
    store.data_keys.master = new
    assert store.data_keys.rotate() == 1 and store.data_keys.rotate() == 0
    store.data_keys.master = MasterKeys(current="new", keys={"new": new.keys["new"]})
    store.data_keys.clear_cache()  # as a fresh process would start
    assert StoreFeed(store).read(0, 1)[0].data["name"] == PII[0]
    assert _stored_bytes(store) == before
    store.data_keys.master = old
    store.data_keys.clear_cache()
    with pytest.raises(MasterKeyMissing):
        StoreFeed(store).read(0, 1)


@pytest.mark.parametrize(
    "spec", ["", "nokey", "k:not-base64!", "k:" + base64.b64encode(b"short").decode()]
)
def test_master_key_configuration_is_checked(spec: str) -> None:
    with pytest.raises(ValueError, match=r"master key|names no key"):
        MasterKeys.parse(spec)


def test_shredded_reads_exactly_what_the_store_gives_once_the_key_is_gone(
    store: EventStore, service: CommandService, ctx: Context
) -> None:
    cid = _story(service, ctx)
    service.execute(
        m.RecordContact(customer_id=cid, channel="sms", direction="outbound"), ctx
    )  # no personal value: nothing sealed
    before = [e for e in StoreFeed(store).read(0, 100) if e.customer_id == cid]
    service.execute(m.EraseCustomer(customer_id=cid), ctx)
    after = [e for e in StoreFeed(store).read(0, 100) if e.customer_id == cid][: len(before)]
    assert [shredded(e.type, e.data) for e in before] == [e.data for e in after]
    assert [list(shredded(e.type, e.data)) for e in before] == [list(e.data) for e in after]


def _library_form(store: EventStore, event: Any) -> StoredEvent:
    """The stored form as sealing through eventsourcing's own mapper makes it: the event's
    fields sealed in a copy, then the library's ``Mapper.to_stored_event`` of an event
    carrying that copy."""
    doc = dict(vars(event))
    if isinstance(event, Snapshot):
        doc["state"] = dict(doc["state"])
        fields, target, kind = Customer.PERSONAL, doc["state"], "snapshot"
    else:
        fields, target, kind = event.PERSONAL, doc, event.TYPE
    store.personal.seal(
        target,
        fields,
        event.originator_id,
        event.originator_version,
        kind,
        owner=None if isinstance(event, Snapshot) else key_owner(event),
    )
    storing = object.__new__(type(event))
    object.__setattr__(storing, "__dict__", doc)
    return Mapper(store.personal.transcoder).to_stored_event(storing)


def test_the_stored_form_is_the_one_sealing_through_the_library_made(
    store: EventStore, service: CommandService, ctx: Context
) -> None:
    """Fields in the same order, the token last, nothing else changed: the clear bytes are
    identical and the sealed ones differ only by their token, which opens to the same
    values (its nonce is new each time)."""
    cid = _story(service, ctx)
    service.execute(m.RecordContact(customer_id=cid, channel="sms", direction="outbound"), ctx)
    events: list[Any] = [*store.customer_events(cid), Snapshot.take(store.customer(cid))]
    sealed = 0
    for event in events:
        ours, library = store.mapper.to_stored_event(event), _library_form(store, event)
        assert (ours.originator_id, ours.originator_version, ours.topic) == (
            library.originator_id,
            library.originator_version,
            library.topic,
        )
        doc, expected = orjson.loads(ours.state), orjson.loads(library.state)
        inner, inner_expected = (
            (doc["state"], expected["state"]) if isinstance(event, Snapshot) else (doc, expected)
        )
        if SEALED not in inner_expected:
            assert ours.state == library.state
            continue
        sealed += 1
        assert list(doc) == list(expected) and list(inner) == list(inner_expected)
        assert {k: v for k, v in inner.items() if k != SEALED} == {
            k: v for k, v in inner_expected.items() if k != SEALED
        }
        opened = vars(store.mapper.to_domain_event(ours))
        assert opened == vars(store.mapper.to_domain_event(library))
    assert sealed >= 4 and len(events) > sealed  # sealed and clear forms both compared
