"""The care policy and the care agenda's decision: who is due for attention on a day, and why.

A customer's care facts (:class:`Facts`, folded from their events by the care read model) and
the ``care`` policy version in force (:class:`CarePolicy`) decide, for a business day ``D``,
the agenda items (:func:`items`), each with a reason (:data:`REASONS`) and the instant it fell
due (``due_at``; an item is on the agenda of ``D`` when it fell due before the end of ``D``):

* ``follow_up``: no contact for the interval that applies to the customer: that of the first
  of ``follow_up.by_segment`` they are a member of, else ``by_tier[tier]``, else
  ``by_stage[stage]``, else ``default_days`` (null: no follow-up). Counted from the last
  contact (or the registration). Due at that instant plus the interval;
* ``birthday`` / ``anniversary``: the next occurrence on or after ``D`` of the date in the
  profile attribute ``occasions.birthday_attribute`` (``anniversary_attribute``) is at most
  ``occasions.upcoming_days`` away. Attribute values ``YYYY-MM-DD``, ``MM-DD`` or ``--MM-DD``
  (anything else: no item); 29 February falls on 28 February in other years. Due at the start
  of the window (occurrence minus ``upcoming_days``). These greetings are marketing: only for a
  customer who granted one of ``occasions.consents`` (any);
* ``complaint``: the customer's latest contact (business time) is a ``complaint``. Due at it;
* ``at_risk``: the customer is in stage ``at_risk``. Due when they entered it.

Every item clears when a contact is recorded at or after its ``due_at`` (a follow-up moves on,
a complaint is answered, a greeting is sent, an at-risk customer is reached); a complaint
contact itself opens a ``complaint`` item. Customers that are merged or erased have none.
Pure: no clock, no I/O; the day comes from the caller.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.loyalty import TIERS
from domain.values import ATTRIBUTE_KEY, ConsentPurpose, LifecycleStage, Status

POLICY_NAME = "care"
REASONS = ("follow_up", "birthday", "anniversary", "complaint", "at_risk")
MARKETING = ("birthday", "anniversary")
LIVE = frozenset({Status.ACTIVE.value, Status.CHURNED.value})
DAY = timedelta(days=1)
_OCCASION = re.compile(r"^(?:(?P<year>\d{4})-|--)?(?P<month>\d{2})-(?P<day>\d{2})$")
_SEGMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SegmentInterval(_Part):
    """A follow-up interval for the members of one segment."""

    segment: str = Field(min_length=1, max_length=64)
    days: int = Field(ge=1, le=3650)


class FollowUp(_Part):
    """How long a customer may go without a contact."""

    default_days: int | None = Field(default=90, ge=1, le=3650)
    by_tier: dict[str, int] = Field(default_factory=dict)
    by_stage: dict[str, int] = Field(default_factory=dict)
    by_segment: list[SegmentInterval] = Field(default_factory=list, max_length=50)


class Occasions(_Part):
    """Birthday and anniversary greetings: where the dates are and who may get them."""

    birthday_attribute: str = "birthday"
    anniversary_attribute: str = "anniversary"
    upcoming_days: int = Field(default=7, ge=0, le=366)
    consents: list[str] = Field(
        default_factory=lambda: [
            ConsentPurpose.EMAIL_MARKETING.value,
            ConsentPurpose.SMS_MARKETING.value,
            ConsentPurpose.PHONE_MARKETING.value,
        ],
        min_length=1,
    )


class CarePolicy(_Part):
    """The care policy document (``PUT /v1/policies/care``); ``{}`` is the default policy
    (a follow-up after 90 days without contact, greetings 7 days ahead for customers with a
    marketing consent, the account owner in the attribute ``owner``). Stored in this
    canonical, fully expanded form."""

    follow_up: FollowUp = FollowUp()
    occasions: Occasions = Occasions()
    owner_attribute: str = "owner"

    def first_problem(self) -> tuple[str, str] | None:
        """The first rule the document breaks, as (field path, message): tiers, stages,
        attribute keys, segment ids and consent purposes are known values, intervals 1-3650."""
        for tier, days in self.follow_up.by_tier.items():
            if tier not in TIERS:
                return f"follow_up.by_tier.{tier}", f"must be one of {', '.join(TIERS)}"
            if not 1 <= days <= 3650:
                return f"follow_up.by_tier.{tier}", "must be from 1 to 3650 days"
        stages = [s.value for s in LifecycleStage]
        for stage, days in self.follow_up.by_stage.items():
            if stage not in stages:
                return f"follow_up.by_stage.{stage}", f"must be one of {', '.join(stages)}"
            if not 1 <= days <= 3650:
                return f"follow_up.by_stage.{stage}", "must be from 1 to 3650 days"
        for index, rule in enumerate(self.follow_up.by_segment):
            if not _SEGMENT_ID.match(rule.segment):
                return f"follow_up.by_segment.{index}.segment", "is not a segment id"
        attributes = {
            "occasions.birthday_attribute": self.occasions.birthday_attribute,
            "occasions.anniversary_attribute": self.occasions.anniversary_attribute,
            "owner_attribute": self.owner_attribute,
        }
        for where, key in attributes.items():
            if not ATTRIBUTE_KEY.match(key):
                return where, "must be an attribute key (lowercase letters, digits, _)"
        purposes = [p.value for p in ConsentPurpose]
        for index, purpose in enumerate(self.occasions.consents):
            if purpose not in purposes:
                return f"occasions.consents.{index}", f"must be one of {', '.join(purposes)}"
        return None

    def interval(
        self, tier: str | None, stage: str | None, segments: Collection[str]
    ) -> int | None:
        """Days without contact before a follow-up (None: never), see the module docstring."""
        for rule in self.follow_up.by_segment:
            if rule.segment in segments:
                return rule.days
        if tier is not None and tier in self.follow_up.by_tier:
            return self.follow_up.by_tier[tier]
        if stage is not None and stage in self.follow_up.by_stage:
            return self.follow_up.by_stage[stage]
        return self.follow_up.default_days


@dataclass(frozen=True)
class Facts:
    """What the agenda needs of one customer, folded from their events."""

    status: str
    stage: str | None
    tier: str | None
    attributes: Mapping[str, Any]
    consents: Mapping[str, bool]
    registered_at: datetime
    last_contact_at: datetime | None
    complaint_at: datetime | None  # the latest contact, when it is a complaint
    at_risk_at: datetime | None  # when the current at_risk stage was entered

    def owner(self, policy: CarePolicy) -> str | None:
        value = self.attributes.get(policy.owner_attribute)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Item:
    """One reason a customer is due for attention: since ``due_at``; ``detail`` says more
    (the interval, the occasion's date)."""

    reason: str
    due_at: datetime
    detail: Mapping[str, Any]


def start_of(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def next_occurrence(value: object, day: date) -> date | None:
    """The first date on or after ``day`` with the month and day of ``value`` (see the module
    docstring for the forms), or None if ``value`` is not such a date."""
    match = _OCCASION.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    month, dom = int(match["month"]), int(match["day"])
    try:
        date(2000, month, dom)  # a leap year: every real month-day exists
    except ValueError:
        return None
    for year in (day.year, day.year + 1):
        leap_day_elsewhere = (month, dom) == (2, 29) and not _leap(year)
        found = date(year, 2, 28) if leap_day_elsewhere else date(year, month, dom)
        if found >= day:
            return found
    return None  # unreachable: next year's date is after ``day``


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def items(
    facts: Facts, policy: CarePolicy, day: date, segments: Collection[str] = ()
) -> list[Item]:
    """The customer's agenda items on business day ``day`` (in :data:`REASONS` order); none
    for a customer who is merged or erased. ``segments``: the ids of the segments they are a
    member of (for ``follow_up.by_segment``)."""
    if facts.status not in LIVE:
        return []
    end = start_of(day) + DAY
    found: list[Item] = []
    days = policy.interval(facts.tier, facts.stage, segments)
    if days is not None:
        since = max(filter(None, (facts.last_contact_at, facts.registered_at)))
        found.append(Item("follow_up", since + days * DAY, {"interval_days": days}))
    if any(facts.consents.get(purpose) is True for purpose in policy.occasions.consents):
        ahead = policy.occasions.upcoming_days
        for reason in MARKETING:
            key = getattr(policy.occasions, f"{reason}_attribute")
            on = next_occurrence(facts.attributes.get(key), day)
            if on is not None and (on - day).days <= ahead:
                found.append(Item(reason, start_of(on) - ahead * DAY, {"on": on.isoformat()}))
    if facts.complaint_at is not None:
        found.append(Item("complaint", facts.complaint_at, {}))
    if facts.stage == LifecycleStage.AT_RISK.value and facts.at_risk_at is not None:
        found.append(Item("at_risk", facts.at_risk_at, {}))
    contact = facts.last_contact_at
    return [
        item
        for item in found
        if item.due_at < end
        and (contact is None or contact < item.due_at or item.reason == "complaint")
    ]
