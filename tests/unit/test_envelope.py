"""The event envelope contract: every event type encodes to a schema-valid envelope."""

from __future__ import annotations

import dataclasses
import inspect
import json
import random
from datetime import UTC, datetime
from uuid import UUID

import jsonschema
import pytest

from commands import messages as m
from commands.campaigns import TargetForCampaign
from commands.service import CommandService, Context
from consumers.store_feed import StoreFeed
from domain.events import EVENT_CLASSES, EVENT_TYPES
from infra.envelope import SCHEMA_PATH, Envelope, EnvelopeError, event_id, event_id_text
from infra.envelope_schema import render
from infra.store import EventStore


def all_event_types_story(service: CommandService, ctx: Context) -> list[UUID]:
    """Commands that between them produce every event type of the contract."""
    ann = service.execute(m.RegisterCustomer(name="Ann", email="ann@example.com"), ctx).customer_id
    bob = service.execute(m.RegisterCustomer(name="Bob", phone="+4930901820"), ctx).customer_id
    assert ann and bob
    for command in [
        m.UpdateProfile(
            customer_id=ann, changes={"name": "Ann A", "attributes": {"city": "Berlin"}}
        ),
        m.RecordContact(
            customer_id=ann, channel="chat", direction="inbound", kind="complaint", summary="late"
        ),
        m.TagCustomer(customer_id=ann, tag="VIP"),
        m.UntagCustomer(customer_id=ann, tag="vip"),
        m.RecordPurchase(
            customer_id=ann,
            order_id="o-1",
            amount="19.99",
            currency="EUR",
            items=[{"sku": "x", "quantity": 2}],
        ),
        m.RecordFeedback(customer_id=ann, nps=9, csat=5, comment="great"),
        m.SetConsent(customer_id=ann, purpose="email_marketing", granted=True, source="web"),
        TargetForCampaign(
            customer_id=ann,
            campaign_id="c1",
            group="treatment",
            purpose="email_marketing",
            channel="email",
            max_touches=3,
            window_days=30,
        ),
        m.RecordCampaignOutcome(customer_id=ann, campaign_id="c1", outcome="opened"),
        m.SetConsent(customer_id=ann, purpose="email_marketing", granted=False),
        m.ChangeLifecycleStage(customer_id=ann, stage="loyal", reason="manual"),
        m.EarnPoints(customer_id=ann, points=10),
        m.RedeemPoints(customer_id=ann, points=3),
        m.ExpirePoints(customer_id=ann, points=2),
        m.ChangeTier(customer_id=ann, tier="gold"),
        m.RecordPurchase(customer_id=ann, order_id="o-2", amount="5", currency="EUR"),
        m.EarnPoints(
            customer_id=ann, points=5, order_id="o-2", expires_at=datetime(2999, 1, 1, tzinfo=UTC)
        ),
        m.RefundPurchase(customer_id=ann, order_id="o-2", reason="returned"),
        m.RevokePoints(customer_id=ann, points=5, order_id="o-2"),
        m.ChurnCustomer(customer_id=ann, reason="price"),
        m.ReactivateCustomer(customer_id=ann),
        m.MergeCustomers(customer_id=ann, duplicate_id=bob),
        m.UnmergeCustomers(customer_id=ann, duplicate_id=bob),
        m.EraseCustomer(customer_id=bob),
    ]:
        service.execute(command, ctx)
    return [ann, bob]


def envelopes(store: EventStore) -> list[Envelope]:
    found = []
    for notification in store.notifications(0, 1000):
        event = store.mapper.to_domain_event(notification)
        if type(event) in EVENT_CLASSES:
            found.append(Envelope.from_event(event, notification.id))  # type: ignore[arg-type]
    return found


def test_every_event_type_validates_against_the_schema(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    all_event_types_story(service, ctx)
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    seen = set()
    sealed = StoreFeed(store).read_sealed(0, 1000)  # as published: personal data encrypted
    for envelope in [*envelopes(store), *sealed]:
        doc = json.loads(envelope.to_bytes())
        validator.validate(doc)
        assert Envelope.from_bytes(envelope.to_bytes()) == envelope
        seen.add(envelope.type)
    assert seen == set(EVENT_TYPES) and any(e.sealed for e in sealed)


def test_schema_file_is_generated_from_the_event_classes() -> None:
    """Regenerate with ``python -m infra.envelope_schema`` when an event changes."""
    assert SCHEMA_PATH.read_text() == render()


def test_envelope_fields_follow_the_contract(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    cid = service.execute(m.RegisterCustomer(name="Ann"), ctx).customer_id
    assert cid
    service.execute(
        m.RecordPurchase(customer_id=cid, order_id="o", amount="12.50", currency="EUR"), ctx
    )
    purchase = next(e for e in envelopes(store) if e.type == "customer.purchase_recorded")
    doc = json.loads(purchase.to_bytes())
    assert doc["id"] == str(event_id(cid, 2)) and doc["version"] == 2
    assert doc["data"] == {"order_id": "o", "amount": "12.50", "currency": "EUR", "items": []}
    assert doc["actor"] == "unit-test" and doc["correlation_id"] == "corr-1"
    assert doc["prev_hash"] is None and doc["hash"] is None
    assert dict(purchase.kafka_headers())["type"] == b"customer.purchase_recorded"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"type": "customer.registered"}',
        b'{"type": "customer.exploded", "data": {}}',
    ],
)
def test_malformed_envelopes_are_rejected_specifically(raw: bytes) -> None:
    with pytest.raises(EnvelopeError):
        Envelope.from_bytes(raw)


FIELD_REASONS = [
    ("occurred_at", "yesterday", "occurred_at must be a date-time with an offset"),
    ("recorded_at", "2024-05-01T10:00:00", "recorded_at must be a date-time with an offset"),
    ("recorded_at", 1714557600, "recorded_at must be a string"),
    ("customer_id", "not-a-uuid", "customer_id must be a UUID"),
    ("id", "", "id must be a UUID"),
    ("type", ["customer.tagged"], "type must be a string"),
    ("type", 7, "type must be a string"),
    ("version", "7", "version must be a positive integer"),
    ("position", True, "position must be a positive integer"),
    ("data", [], "data must be an object"),
    ("actor", None, "actor must be a string"),
]


@pytest.mark.parametrize(("name", "value", "reason"), FIELD_REASONS)
def test_a_bad_envelope_field_is_named_in_the_reason(
    service: CommandService, store: EventStore, ctx: Context, name: str, value: object, reason: str
) -> None:
    """Not a Python exception's repr (``malformed envelope: ValueError("Invalid isoformat
    string: 'yesterday'")``): the DLQ reason names the field and what it must be."""
    service.execute(m.RegisterCustomer(name="Ann"), ctx)
    doc = json.loads(envelopes(store)[0].to_bytes())
    with pytest.raises(EnvelopeError) as refused:
        Envelope.from_bytes(json.dumps({**doc, name: value}).encode())
    assert str(refused.value) == reason
    del doc[name]
    with pytest.raises(EnvelopeError) as refused:
        Envelope.from_bytes(json.dumps(doc).encode())
    assert str(refused.value) == f"{name} is missing"


def test_event_id_text_is_the_event_ids_text() -> None:
    rng = random.Random(5)
    for version in [1, 2, 9, 10, 99, 1000, 2**40, *range(3, 2000)]:
        customer = UUID(int=rng.getrandbits(128), version=4)
        assert event_id_text(str(customer), version) == str(event_id(customer, version))


def test_the_written_constructor_takes_and_sets_every_field_as_the_dataclass_did() -> None:
    """Envelope's constructor is written out (it sets the frozen fields without 15
    ``object.__setattr__`` calls): it takes the fields' own parameters in their order with
    their defaults (``headers``: a new dict each time), sets every field, and the dataclass's
    behaviour stays (frozen, compared without headers, ``replace``). A field added to the class
    but not to the constructor fails here."""
    fields = dataclasses.fields(Envelope)
    parameters = list(inspect.signature(Envelope).parameters.values())
    assert [p.name for p in parameters] == [f.name for f in fields]
    empty = inspect.Parameter.empty
    defaults = [empty if f.default is dataclasses.MISSING else f.default for f in fields]
    assert [p.default for p in parameters] == [*defaults[:-1], None]  # headers: a new dict
    assert {p.kind for p in parameters} == {inspect.Parameter.POSITIONAL_OR_KEYWORD}
    at = datetime(2026, 12, 1, tzinfo=UTC)
    values = ("customer.tagged", 1, UUID(int=7), 3, 9, at, at, "a", "c", None, {"tag": "x"})
    envelope = Envelope(*values, "p", "h", "s", {"k": "v"})
    assert [getattr(envelope, f.name) for f in fields] == [*values, "p", "h", "s", {"k": "v"}]
    assert set(vars(envelope)) == {f.name for f in fields}  # no cached property asked for yet
    bare, other = Envelope(*values), Envelope(*values)
    assert (bare.prev_hash, bare.hash, bare.sealed, bare.headers) == (None, None, None, {})
    assert bare.headers is not other.headers
    bare.headers["seen"] = "yes"
    assert bare == other and bare != envelope  # headers are not compared
    assert dataclasses.replace(envelope, headers={}) == envelope
    assert dataclasses.replace(bare, version=4).version == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        bare.version = 5  # type: ignore[misc]
    assert bare.id == event_id(UUID(int=7), 3) and bare.customer_key == str(UUID(int=7))


def test_times_as_text_are_formatted_once_and_not_carried_by_a_replacement() -> None:
    occurred = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    recorded = datetime(2026, 1, 2, 3, 4, 6, 789, tzinfo=UTC)
    envelope = Envelope(
        "customer.tagged", 1, UUID(int=7), 3, 9, occurred, recorded, "a", "c", None, {}
    )
    assert (envelope.occurred_text, envelope.recorded_text) == (
        occurred.isoformat(),
        recorded.isoformat(),
    )
    assert {"occurred_text", "recorded_text"} <= set(vars(envelope))  # kept, not formatted again
    later = dataclasses.replace(envelope, recorded_at=recorded.replace(microsecond=0))
    assert later.recorded_text == "2026-01-02T03:04:06+00:00"
