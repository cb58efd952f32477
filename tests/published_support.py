"""A varied generated store, and the check that the relay's lean read path
(:mod:`infra.published`) publishes exactly what the mapper's path publishes on it."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from commands import messages as m
from commands.service import CommandService, Context
from consumers.store_feed import StoreFeed
from domain.customer import Customer
from domain.events import EVENT_TYPES, DuplicateAbsorbed, Erased, ProfileUpdated, Registered
from infra.published import LeanEncoder
from infra.store import CUSTOMER_TOPICS, EventStore
from tests.unit.test_envelope import all_event_types_story

TEXTS = ["Ann", 'Zoë "Q" O\'Neil', "李小龍", "back\\slash", "tab\tand\nnewline", "emoji 🎉", ""]


def _text(rng: random.Random) -> str | None:
    return rng.choice([None, *TEXTS]) or None


def _registration(rng: random.Random, n: int, now: datetime) -> m.Command:
    attributes: dict[str, Any] = {
        "tier": rng.choice(["bronze", "silver"]),
        "score": rng.choice([0, 7, -3, 2**40]),
        "ratio": rng.choice([0.5, 1e-7, 123456.789]),
        "vip": rng.choice([True, False]),
        "note": rng.choice(TEXTS[:-1]),
    }
    return m.RegisterCustomer(
        customer_id=UUID(int=rng.getrandbits(128), version=4),
        name=rng.choice(TEXTS[:-1]) + f" {n}",
        email=f"p{n}@example.com" if rng.random() < 0.7 else None,
        phone=f"+49 30 9018{n:04d}" if rng.random() < 0.5 else None,
        attributes=dict(rng.sample(sorted(attributes.items()), rng.randint(0, 5))),
        external_ids={"shop": f"S-{n}"} if rng.random() < 0.3 else {},
        source=rng.choice([None, "web", "import"]),
        lifecycle_stage=rng.choice(["prospect", "new", "active"]),
        occurred_at=now - timedelta(days=rng.randint(1, 900), microseconds=rng.randint(0, 10**6)),
    )


def _everyday(rng: random.Random, cid: UUID) -> m.Command:
    draw = rng.randrange(12)
    when = datetime.now(UTC) - timedelta(seconds=rng.randint(0, 10**6)) if draw % 2 else None
    commands: list[m.Command] = [
        m.RecordContact(
            customer_id=cid,
            channel=rng.choice(["email", "phone", "chat"]),
            direction=rng.choice(["inbound", "outbound"]),
            subject=_text(rng),
            summary=_text(rng),
            outcome=_text(rng),
        ),
        m.TagCustomer(customer_id=cid, tag=f"t{rng.randint(0, 5)}"),
        m.UntagCustomer(customer_id=cid, tag=f"t{rng.randint(0, 5)}"),
        m.RecordPurchase(
            customer_id=cid,
            order_id=uuid4().hex,
            amount=rng.choice(["0", "12.50", "1000000", "0.0001", "7.1"]),
            currency=rng.choice(["EUR", "USD"]),
            items=[
                {"sku": "a-1", "quantity": 2, "price": 9.99, "meta": {"gift": True, "n": None}},
                {"sku": "b", "quantity": 1, "label": rng.choice(TEXTS)},
            ][: rng.randint(0, 2)],
        ),
        m.RecordFeedback(customer_id=cid, nps=rng.randint(0, 10), comment=_text(rng)),
        m.SetConsent(customer_id=cid, purpose="sms", granted=rng.random() < 0.5, source="web"),
        m.ChangeLifecycleStage(customer_id=cid, stage=rng.choice(["active", "loyal"])),
        m.EarnPoints(customer_id=cid, points=rng.randint(1, 100), reason=_text(rng)),
        m.RedeemPoints(customer_id=cid, points=1),
        m.ChangeTier(customer_id=cid, tier=rng.choice(["gold", "silver"])),
        m.UpdateProfile(
            customer_id=cid,
            changes={
                "name": rng.choice(TEXTS[:-1]),
                "phone": rng.choice([None, "+4930901820"]),
                "attributes": {"tier": rng.choice([None, "gold"]), "x": 1.5},
            },
        ),
        rng.choice(
            [
                m.ChurnCustomer(customer_id=cid, reason="price"),
                m.ReactivateCustomer(customer_id=cid),
            ]
        ),
    ]
    command = commands[draw]
    return command if when is None else _dated(command, when)


def _dated(command: m.Command, when: datetime) -> m.Command:
    return dataclasses.replace(command, occurred_at=when)


def _legacy(store: EventStore) -> int:
    """Events of older class versions (written as earlier code stored them): a v1
    registration, a v1 profile update, a v1 merge part and a v1 erasure."""
    customer = uuid4()
    at = {"_type_": "datetime", "_data_": datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC).isoformat()}
    meta = {"timestamp": at, "actor": "legacy", "correlation_id": "c", "causation_id": None}
    meta["occurred_at"] = at
    rows: list[tuple[type, dict[str, Any]]] = [
        (Registered, {"originator_topic": get_topic(Customer), "name": "Old", "email": None}),
        (ProfileUpdated, {"changes": {"name": "Older"}, "attributes": {}}),
        (
            DuplicateAbsorbed,
            {"duplicate_id": str(uuid4()), "tags": ["x"], "purchases": {}, "contacts_count": 0},
        ),
        (Erased, {"reason": None}),
    ]
    stored = []
    for version, (cls, fields) in enumerate(rows, start=1):
        state = meta | fields
        if cls is Registered:
            state |= {"phone": None, "attributes": {}}
        if cls is DuplicateAbsorbed:
            state |= {"email": None, "phone": None}
        stored.append(StoredEvent(customer, version, get_topic(cls), orjson.dumps(state)))
    store.recorder.insert_events(stored)
    return len(rows)


def generated_store(store: EventStore, seed: int = 16) -> int:
    """Fill ``store`` with a varied history; returns how many events need upcasting."""
    rng = random.Random(seed)
    service = CommandService(store, default_region="DE", index_key="k")
    ctx = Context(actor="generator", correlation_id="corr-é", causation_id="cause-1")
    all_event_types_story(service, Context(actor="story"))
    now = datetime.now(UTC)
    registrations = [_registration(rng, n, now) for n in range(40)]
    service.execute_batch(registrations, ctx)
    ids = [c.customer_id for c in registrations if c.customer_id is not None]
    for _ in range(20):
        service.execute_batch([_everyday(rng, rng.choice(ids)) for _ in range(60)], ctx)
    # merges (personal data moved under the duplicate's key), a chain, unmerges, erasures
    a, b, c, d, e, f, g, h = ids[:8]
    for command in [
        m.MergeCustomers(customer_id=a, duplicate_id=b),
        m.MergeCustomers(customer_id=c, duplicate_id=a),
        m.UnmergeCustomers(customer_id=c, duplicate_id=a),
        m.UnmergeCustomers(customer_id=a, duplicate_id=b),
        m.EraseCustomer(customer_id=b, reason="gdpr"),
        m.MergeCustomers(customer_id=g, duplicate_id=h),
        m.MergeCustomers(customer_id=d, duplicate_id=e),
        m.EraseCustomer(customer_id=d),
        m.EraseCustomer(customer_id=f),
    ]:
        service.execute(command, ctx)
    service.execute_batch([_everyday(rng, rng.choice(ids[8:])) for _ in range(60)], ctx)
    return _legacy(store)


def assert_published_as_by_the_mapper(store: EventStore) -> None:
    """The lean path's output equals the mapper's, byte for byte, over a generated store; the
    comparison covers every event type, sealed data, hash links and upcast events."""
    legacy = generated_store(store)
    feed = StoreFeed(store)
    expected = feed.read_sealed(0, 100_000)
    published = feed.read_published(0, 100_000)
    assert [p.value for p in published] == [e.to_bytes() for e in expected]
    assert [(p.customer_key, p.version, p.position) for p in published] == [
        (e.customer_key, e.version, e.position) for e in expected
    ]
    assert [p.kafka_headers() for p in published] == [e.kafka_headers() for e in expected]
    # the comparison covers what it claims: every type, sealed data, links, upcast events
    assert {e.type for e in expected} == set(EVENT_TYPES)
    assert sum(e.sealed is not None for e in expected) > 50
    assert sum(e.hash is not None for e in expected) > 700
    assert any(e.data.get("items") for e in expected)
    lean = LeanEncoder(store.personal_mapper)
    encoded = [lean.encode(row) for row in store.backend.log_rows(CUSTOMER_TOPICS, 0, 100_000)]
    assert sum(p is None for p in encoded) == legacy  # upcasting: the mapper's path
    assert len(encoded) == len(expected) > 700
