"""The care policy and the agenda decision (domain/care.py): every reason, when it falls due,
what clears it, the interval by segment, tier, stage and default, consent for greetings, and
no item for merged or erased customers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from domain.care import CarePolicy, Facts, items, next_occurrence
from domain.errors import InvalidInput
from domain.policy import canonical, parse_document

DAY = timedelta(days=1)
D0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
POLICY = CarePolicy.model_validate(
    {
        "follow_up": {
            "default_days": 90,
            "by_tier": {"gold": 30},
            "by_stage": {"new": 14},
            "by_segment": [{"segment": "vip", "days": 7}],
        },
        "occasions": {"upcoming_days": 5},
    }
)
BASE = Facts(
    status="active",
    stage="active",
    tier=None,
    attributes={},
    consents={},
    registered_at=D0,
    last_contact_at=None,
    complaint_at=None,
    at_risk_at=None,
)


def reasons(facts: Facts, day: date, segments: tuple[str, ...] = ()) -> dict[str, str]:
    return {i.reason: i.due_at.isoformat() for i in items(facts, POLICY, day, segments)}


def test_the_empty_document_is_the_default_policy_in_canonical_form() -> None:
    assert canonical("care", {}) == {
        "follow_up": {"default_days": 90, "by_tier": {}, "by_stage": {}, "by_segment": []},
        "occasions": {
            "birthday_attribute": "birthday",
            "anniversary_attribute": "anniversary",
            "upcoming_days": 7,
            "consents": ["email_marketing", "sms_marketing", "phone_marketing"],
        },
        "owner_attribute": "owner",
    }


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"follow_up": {"default_days": 0}}, "document.follow_up.default_days"),
        ({"follow_up": {"by_tier": {"diamond": 3}}}, "document.follow_up.by_tier.diamond"),
        ({"follow_up": {"by_tier": {"gold": 0}}}, "document.follow_up.by_tier.gold"),
        ({"follow_up": {"by_stage": {"sleepy": 3}}}, "document.follow_up.by_stage.sleepy"),
        ({"follow_up": {"by_stage": {"new": "3"}}}, "document.follow_up.by_stage.new"),
        (
            {"follow_up": {"by_segment": [{"segment": "a b", "days": 3}]}},
            "document.follow_up.by_segment.0.segment",
        ),
        ({"occasions": {"upcoming_days": -1}}, "document.occasions.upcoming_days"),
        ({"occasions": {"birthday_attribute": "Birth"}}, "document.occasions.birthday_attribute"),
        ({"occasions": {"consents": ["spam"]}}, "document.occasions.consents.0"),
        ({"occasions": {"consents": []}}, "document.occasions.consents"),
        ({"owner_attribute": ""}, "document.owner_attribute"),
        ({"greet": True}, "document.greet"),
    ],
)
def test_a_bad_document_is_refused_naming_the_field(document: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_document("care", document)
    assert raised.value.field == field


def test_a_follow_up_falls_due_after_the_interval_since_the_last_contact() -> None:
    assert reasons(BASE, date(2026, 5, 29)) == {}
    assert reasons(BASE, date(2026, 5, 30)) == {"follow_up": (D0 + 90 * DAY).isoformat()}
    contacted = replace(BASE, last_contact_at=D0 + 60 * DAY)
    assert reasons(contacted, date(2026, 5, 30)) == {}  # the contact moved it on
    assert reasons(contacted, date(2026, 7, 29)) == {"follow_up": (D0 + 150 * DAY).isoformat()}


def test_the_interval_is_the_segments_then_the_tiers_then_the_stages_then_the_default() -> None:
    day = date(2026, 3, 9)  # 8 days after registration
    assert "follow_up" in reasons(BASE, day, ("vip", "other"))
    gold = replace(BASE, tier="gold", stage="new")
    assert "follow_up" not in reasons(gold, day)  # gold: 30 days, before new's 14
    assert "follow_up" in reasons(gold, date(2026, 3, 31))
    assert "follow_up" in reasons(replace(BASE, stage="new"), date(2026, 3, 15))
    silent = POLICY.model_copy(
        update={"follow_up": POLICY.follow_up.model_copy(update={"default_days": None})}
    )
    assert items(BASE, silent, date(2030, 1, 1)) == []


def test_greetings_come_ahead_of_the_occasion_only_with_a_marketing_consent() -> None:
    facts = replace(BASE, attributes={"birthday": "1990-03-20", "anniversary": "--04-02"})
    assert reasons(facts, date(2026, 3, 16)) == {}  # no consent
    consenting = replace(facts, consents={"sms_marketing": True, "email_marketing": False})
    assert reasons(consenting, date(2026, 3, 14)) == {}
    assert reasons(consenting, date(2026, 3, 15)) == {"birthday": "2026-03-15T00:00:00+00:00"}
    assert reasons(consenting, date(2026, 3, 20)) == {"birthday": "2026-03-15T00:00:00+00:00"}
    assert "birthday" not in reasons(consenting, date(2026, 3, 21))  # passed: next year's
    assert reasons(consenting, date(2026, 3, 28)) == {"anniversary": "2026-03-28T00:00:00+00:00"}
    greeted = replace(consenting, last_contact_at=datetime(2026, 3, 16, 10, tzinfo=UTC))
    assert reasons(greeted, date(2026, 3, 18)) == {}
    withdrawn = replace(consenting, consents={"sms_marketing": False})
    assert reasons(withdrawn, date(2026, 3, 18)) == {}


@pytest.mark.parametrize(
    ("value", "day", "expected"),
    [
        ("1990-12-31", date(2026, 12, 31), date(2026, 12, 31)),
        ("12-31", date(2027, 1, 1), date(2027, 12, 31)),
        ("--01-02", date(2026, 12, 30), date(2027, 1, 2)),
        ("2000-02-29", date(2027, 2, 1), date(2027, 2, 28)),
        ("2000-02-29", date(2028, 2, 1), date(2028, 2, 29)),
        ("2000-02-30", date(2027, 2, 1), None),
        ("1990-13-01", date(2027, 2, 1), None),
        ("31/12/1990", date(2027, 2, 1), None),
        (19901231, date(2027, 2, 1), None),
        (None, date(2027, 2, 1), None),
    ],
)
def test_occasions_recur_every_year(value: object, day: date, expected: date | None) -> None:
    assert next_occurrence(value, day) == expected


def test_a_complaint_stays_open_until_a_later_contact() -> None:
    complained = replace(BASE, last_contact_at=D0 + DAY, complaint_at=D0 + DAY)
    assert reasons(complained, date(2026, 3, 1)) == {}  # not yet on the day before
    assert reasons(complained, date(2026, 3, 2)) == {"complaint": (D0 + DAY).isoformat()}


def test_entering_at_risk_is_due_until_a_contact_after_it() -> None:
    at_risk = replace(BASE, stage="at_risk", at_risk_at=D0 + 10 * DAY, last_contact_at=D0)
    assert reasons(at_risk, date(2026, 3, 11)) == {"at_risk": (D0 + 10 * DAY).isoformat()}
    reached = replace(at_risk, last_contact_at=D0 + 12 * DAY)
    assert reasons(reached, date(2026, 3, 13)) == {}


@pytest.mark.parametrize("status", ["merged", "erased"])
def test_merged_and_erased_customers_have_no_item(status: str) -> None:
    due = replace(
        BASE,
        status=status,
        stage="at_risk",
        at_risk_at=D0,
        complaint_at=D0,
        last_contact_at=D0,
        consents={"email_marketing": True},
        attributes={"birthday": "03-02"},
    )
    assert items(due, POLICY, date(2027, 3, 1)) == []
    assert reasons(replace(due, status="churned"), date(2027, 3, 1)) != {}
