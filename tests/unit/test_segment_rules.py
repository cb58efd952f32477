"""Segment rule language, case by case: validation paths, every op, relative times, windows,
consent gating. Properties over generated rules are in ``test_segment_rule_properties``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from domain.errors import InvalidInput
from domain.segment_evaluation import admits, evaluate, matches
from domain.segment_rules import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    Rule,
    is_time_relative,
    parse,
    parse_purpose,
    uses_rfm,
)
from infra.envelope import Envelope
from infra.store import EventStore
from projections import profile_fold
from tests.unit.segment_rules_support import cond

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
VIP = {"field": "tags", "op": "contains", "value": "vip"}


def nested(depth: int) -> Rule:
    rule: Rule = VIP
    for _ in range(depth - 1):
        rule = {"not": rule}
    return rule


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("rule", "path", "fragment"),
    [
        ([], "rule", "must be an object"),
        ({"all": []}, "rule.all", "non-empty list"),
        ({"any": VIP}, "rule.any", "non-empty list"),
        ({"all": [VIP], "any": [VIP]}, "rule", "only key"),
        ({"all": [VIP, cond("tags", "gte", "x")]}, "rule.all[1].op", "contains, in"),
        ({"any": [{"not": cond("nope", "eq", 1)}]}, "rule.any[0].not.field", "unknown field"),
        ({"op": "eq", "value": 1}, "rule.field", "is required"),
        ({"field": "tags", "op": "contains"}, "rule.value", "is required"),
        ({**VIP, "extra": 1}, "rule.extra", "unknown key"),
        (cond("consents.pigeon_post", "eq", True), "rule.field", "must be one of"),
        (cond("purchases.total.XYZ", "gte", 1), "rule.field", "ISO-4217"),
        (cond("attributes.Bad-Key", "eq", 1), "rule.field", "unknown field"),
        (cond("status", "eq", "asleep"), "rule.value", "must be one of"),
        (cond("tags", "contains", "!!!"), "rule.value", "no letters"),
        (cond("purchases.count", "in", []), "rule.value", "list of 1 to"),
        (cond("purchases.count", "in", [1, "x"]), "rule.value[1]", "number"),
        (cond("purchases.count", "eq", "abc"), "rule.value", "number"),
        (cond("name", "eq", 5), "rule.value", "a string"),
        (cond("name", "in", ["a", "x" * 1001]), "rule.value[1]", "at most 1000"),
        (cond("consents.email_marketing", "eq", "yes"), "rule.value", "true or false"),
        (cond("attributes.beta", "gt", True), "rule.value", "true or false"),
        (cond("attributes.plan", "eq", None), "rule.value", "string, number or boolean"),
        (cond("status", "exists", "yes"), "rule.value", "true or false"),
        (cond("contacts.last_at", "before", "-30x"), "rule.value", "RFC 3339"),
        (cond("contacts.last_at", "before", "2024-01-01T00:00:00"), "rule.value", "RFC 3339"),
        (cond("contacts.last_at", "before", "-0d"), "rule.value", "more than zero"),
        (cond("contacts.last_at", "after", "-999999w"), "rule.value", "100 years"),
        (cond("points", "gte", 1, within="30d"), "rule.within", "take a window"),
        (cond("purchases.count", "gte", 1, within="-30d"), "rule.within", "duration"),
        (cond("purchases.count", "gte", 1, within="0h"), "rule.within", "more than zero"),
        (nested(MAX_DEPTH + 1), "rule" + ".not" * MAX_DEPTH, "levels deep"),
        ({"any": [VIP] * (MAX_CONDITIONS + 1)}, f"rule.any[{MAX_CONDITIONS}]", "at most"),
    ],
)
def test_invalid_rules_name_the_offending_path(rule: Any, path: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(rule)
    assert caught.value.field == path
    assert fragment in caught.value.message


def test_limits_are_inclusive() -> None:
    assert parse(nested(MAX_DEPTH)) == nested(MAX_DEPTH)
    assert len(parse({"any": [VIP] * MAX_CONDITIONS})["any"]) == MAX_CONDITIONS


def test_parse_normalises_values_and_fields() -> None:
    rule = {
        "all": [
            cond("tags", "in", ["VIP", "Gold Member"]),
            cond("status", "eq", " Active "),
            cond("purchases.total.eur", "gte", "500", within="90d"),
            cond("consents.EMAIL_MARKETING", "eq", True),
        ]
    }
    assert parse(rule) == {
        "all": [
            cond("tags", "in", ["vip", "gold-member"]),
            cond("status", "eq", "active"),
            cond("purchases.total.EUR", "gte", "500", within="90d"),
            cond("consents.email_marketing", "eq", True),
        ]
    }
    assert parse(parse(rule)) == parse(rule)


def test_purpose_is_a_consent_purpose() -> None:
    assert parse_purpose(None) is None
    assert parse_purpose("Email_Marketing") == "email_marketing"
    with pytest.raises(InvalidInput, match="purpose"):
        parse_purpose("carrier_pigeon")


# --------------------------------------------------------------------------- every op


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    """A real profile state, folded from events written by the command service."""
    store = EventStore("memory://")
    service = CommandService(store, default_region="DE", index_key="k")
    ctx = Context(actor="unit")
    attributes = {"plan": "pro", "seats": 12, "beta": True}
    now = datetime.now(UTC)
    registered = m.RegisterCustomer(
        name="Ada",
        email="ada@example.com",
        attributes=attributes,
        occurred_at=now - timedelta(days=365),
    )
    customer = service.execute(registered, ctx).customer_id
    assert customer is not None
    commands: list[m.Command] = [
        m.TagCustomer(customer_id=customer, tag="VIP"),
        m.TagCustomer(customer_id=customer, tag="newsletter"),
        m.RecordPurchase(
            customer_id=customer,
            order_id="o1",
            amount="300",
            currency="EUR",
            occurred_at=now - timedelta(days=10),
        ),
        m.RecordPurchase(
            customer_id=customer,
            order_id="o2",
            amount="250.00",
            currency="EUR",
            occurred_at=now - timedelta(days=100),
        ),
        m.RecordPurchase(
            customer_id=customer,
            order_id="o3",
            amount="20",
            currency="USD",
            occurred_at=now - timedelta(days=5),
        ),
        m.RecordContact(
            customer_id=customer,
            channel="email",
            direction="inbound",
            occurred_at=now - timedelta(days=40),
        ),
        m.RecordFeedback(customer_id=customer, nps=9),
        m.SetConsent(customer_id=customer, purpose="email_marketing", granted=True),
        m.SetConsent(customer_id=customer, purpose="sms_marketing", granted=False),
        m.ChangeLifecycleStage(customer_id=customer, stage="loyal"),
        m.EarnPoints(customer_id=customer, points=120),
        m.ChangeTier(customer_id=customer, tier="gold"),
    ]
    for command in commands:
        service.execute(command, ctx)
    folded = profile_fold.empty(customer)
    for position, event in store.history(customer):
        profile_fold.apply(folded, Envelope.from_event(event, position))
    store.close()
    return folded


OPS_CASES = [
    (cond("tags", "contains", "vip"), True),
    (cond("tags", "contains", "gold"), False),
    (cond("tags", "in", ["gold", "newsletter"]), True),
    (cond("tags", "in", ["gold"]), False),
    (cond("lifecycle_stage", "eq", "loyal"), True),
    (cond("lifecycle_stage", "ne", "loyal"), False),
    (cond("lifecycle_stage", "in", ["new", "loyal"]), True),
    (cond("status", "eq", "active"), True),
    (cond("status", "exists", True), True),
    (cond("email", "eq", "ada@example.com"), True),
    (cond("phone", "exists", False), True),
    (cond("phone", "ne", "+4930901820"), False),  # missing never matches, not even ne
    (cond("consents.email_marketing", "eq", True), True),
    (cond("consents.sms_marketing", "eq", False), True),
    (cond("consents.phone_marketing", "eq", False), True),  # never given = false
    (cond("consents.phone_marketing", "ne", True), True),
    (cond("attributes.plan", "eq", "pro"), True),
    (cond("attributes.plan", "gt", "alpha"), True),
    (cond("attributes.plan", "gt", 5), False),  # mixed types never compare
    (cond("attributes.seats", "gt", 10), True),
    (cond("attributes.seats", "lte", "12"), True),
    (cond("attributes.seats", "in", [11, 12.0]), True),
    (cond("attributes.beta", "eq", True), True),
    (cond("attributes.beta", "eq", 1), False),  # booleans equal only booleans
    (cond("attributes.missing", "exists", False), True),
    (cond("attributes.missing", "ne", "x"), False),
    (cond("purchases.count", "eq", 3), True),
    (cond("purchases.count", "gte", 4), False),
    (cond("purchases.count", "eq", 2, within="30d"), True),
    (cond("purchases.total.EUR", "gte", 550), True),
    (cond("purchases.total.EUR", "eq", "550.0"), True),
    (cond("purchases.total.EUR", "gt", "550"), False),
    (cond("purchases.total.EUR", "eq", 300, within="30d"), True),
    (cond("purchases.total.USD", "eq", 0, within="3d"), True),
    (cond("purchases.total.GBP", "lt", "0.01"), True),  # no purchases = 0
    (cond("purchases.last_at", "after", "-6d"), True),
    (cond("purchases.last_at", "before", "-6d"), False),
    (cond("purchases.first_at", "before", "-90d"), True),
    (cond("purchases.first_at", "after", "2000-01-01T00:00:00+00:00"), True),
    (cond("purchases.last_at", "before", "+1d"), True),
    (cond("contacts.count", "eq", 1), True),
    (cond("contacts.last_at", "before", "-30d"), True),
    ({"not": cond("contacts.last_at", "after", "-30d")}, True),
    (cond("feedback.nps", "gte", 9), True),
    (cond("feedback.csat", "exists", False), True),
    (cond("feedback.csat", "lt", 5), False),
    (cond("points", "eq", 120), True),
    (cond("tier", "eq", "gold"), True),
    (cond("tier", "in", ["silver"]), False),
    (cond("created_at", "after", "-1d"), True),
    (cond("rfm.r", "gte", 4), False),  # no scores given
    ({"all": [VIP, cond("tier", "eq", "gold")]}, True),
    ({"all": [VIP, cond("tier", "eq", "silver")]}, False),
    ({"any": [cond("tier", "eq", "silver"), VIP]}, True),
    ({"not": VIP}, False),
]


@pytest.mark.parametrize(("rule", "expected"), OPS_CASES)
def test_every_op(state: dict[str, Any], rule: Rule, expected: bool) -> None:
    assert evaluate(parse(rule), state, datetime.now(UTC)) is expected


def test_rfm_fields_read_the_given_scores(state: dict[str, Any]) -> None:
    scores = {"r": 5, "f": "3", "group": "champions"}
    now = datetime.now(UTC)
    assert evaluate(parse(cond("rfm.r", "gte", 4)), state, now, scores)
    assert evaluate(parse(cond("rfm.f", "eq", 3)), state, now, scores)
    assert evaluate(parse(cond("rfm.group", "eq", "champions")), state, now, scores)
    assert evaluate(parse(cond("rfm.m", "exists", False)), state, now, scores)
    assert not evaluate(parse(cond("rfm.group", "eq", "champions")), state, now, None)


def test_an_unregistered_state_matches_nothing_but_absence() -> None:
    empty = profile_fold.empty(uuid4())
    assert not evaluate(parse(cond("purchases.count", "gte", 0)), empty, NOW)
    assert not evaluate(parse(cond("consents.email_marketing", "eq", False)), empty, NOW)
    assert evaluate(parse(cond("status", "exists", False)), empty, NOW)


# --------------------------------------------------------------------------- time


def orders_state(*orders: tuple[str, str, datetime]) -> dict[str, Any]:
    return {
        "status": "active",
        "orders": {f"o{i}": [c, a, when.isoformat()] for i, (c, a, when) in enumerate(orders)},
    }


def test_windows_are_half_open_and_exclude_the_future() -> None:
    state = orders_state(
        ("EUR", "1", NOW - timedelta(days=30)),  # on the edge: outside
        ("EUR", "2", NOW - timedelta(days=30) + timedelta(microseconds=1)),
        ("EUR", "4", NOW),  # now: inside
        ("EUR", "8", NOW + timedelta(hours=1)),  # future: outside
        ("USD", "16", NOW - timedelta(days=1)),
    )
    count = parse(cond("purchases.count", "eq", 3, within="30d"))
    total = parse(cond("purchases.total.EUR", "eq", "6", within="30d"))
    assert evaluate(count, state, NOW)
    assert evaluate(total, state, NOW)
    assert evaluate(
        parse(cond("purchases.count", "eq", 2, within="2w")), state, NOW - timedelta(days=20)
    )


def test_relative_times_count_from_now_and_absolute_ones_do_not() -> None:
    state = {"status": "active", "contacts": {"count": 1, "last_at": "2025-05-01T00:00:00+02:00"}}
    recent = parse(cond("contacts.last_at", "after", "-30d"))
    fixed = parse(cond("contacts.last_at", "after", "2025-04-30T21:59:59Z"))
    assert evaluate(recent, state, datetime(2025, 5, 20, tzinfo=UTC))
    assert not evaluate(recent, state, datetime(2025, 6, 20, tzinfo=UTC))
    assert evaluate(
        parse(cond("contacts.last_at", "after", "-12h")),
        state,
        datetime(2025, 4, 30, 23, tzinfo=UTC),
    )
    assert evaluate(fixed, state, datetime(2099, 1, 1, tzinfo=UTC))
    assert evaluate(recent, state, datetime(2025, 5, 20))  # a naive now is UTC


@pytest.mark.parametrize(
    ("rule", "relative", "rfm"),
    [
        (VIP, False, False),
        (cond("contacts.last_at", "before", "-30d"), True, False),
        (cond("contacts.last_at", "before", "2024-01-01T00:00:00+00:00"), False, False),
        ({"not": cond("purchases.count", "gte", 2, within="90d")}, True, False),
        ({"any": [VIP, {"all": [cond("rfm.group", "eq", "lost")]}]}, False, True),
    ],
)
def test_time_relative_and_rfm_rules_are_recognised(rule: Rule, relative: bool, rfm: bool) -> None:
    assert is_time_relative(parse(rule)) is relative
    assert uses_rfm(parse(rule)) is rfm


# --------------------------------------------------------------------------- consent gating


@pytest.mark.parametrize(
    ("status", "consents", "purpose", "admitted"),
    [
        ("active", {}, None, True),
        ("churned", {}, None, True),
        ("merged", {}, None, False),
        ("erased", {"email_marketing": True}, None, False),
        ("active", {}, "email_marketing", False),
        ("active", {"email_marketing": False}, "email_marketing", False),
        ("active", {"email_marketing": True}, "email_marketing", True),
        ("active", {"email_marketing": True}, "sms_marketing", False),
        ("erased", {"email_marketing": True}, "email_marketing", False),
    ],
)
def test_consent_gating(
    status: str, consents: dict[str, bool], purpose: str | None, admitted: bool
) -> None:
    state = {"status": status, "consents": consents, "tags": ["vip"]}
    assert admits(state, purpose) is admitted
    assert matches(parse(VIP), purpose, state, NOW) is admitted
    assert not matches(parse({"not": VIP}), purpose, state, NOW)
