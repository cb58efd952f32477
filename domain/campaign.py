"""Campaigns: targeted marketing on a segment or an inline rule, with a randomised holdout
control group.

A :class:`Campaign` is an aggregate (a random id) holding one :class:`CampaignSpec` in
canonical form and a lifecycle, each step an event::

    draft ──schedule──> scheduled ──┐
      │  └──────────launch──────────┴─> launching ──> launched ──> completed
      └──cancel (draft or scheduled)──> cancelled

The spec may be edited (``campaign.updated``) only before the launch starts. The launch
freezes the audience at one store position (``campaign.launch_started``): its members are the
segment's members at that position (an inline rule is a segment of its own:
:mod:`domain.campaign_audience`); each is then targeted by a ``customer.campaign_targeted``
event on the customer (:meth:`domain.customer.Customer.target`), which refuses customers
without consent for the campaign's purpose, erased or merged customers and customers over the
frequency cap. ``campaign.launched`` records the counts.

Assignment to treatment or control is :func:`assign`: a keyed hash (HMAC-SHA256) of the
campaign and the customer under the campaign's own random ``assignment_key`` (recorded in
``campaign.created``), so it is reproducible from the log, independent between campaigns and
unpredictable without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, TypeVar
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from domain.campaign_audience import Audience, canonical
from domain.errors import DomainError, InvalidInput
from domain.event_base import LoggedEvent, Meta
from domain.text_policy import Text, normalise_text
from domain.values import ConsentPurpose, check_aware, normalise_currency, parse_amount, utc_text

TREATMENT, CONTROL = "treatment", "control"
MAX_WINDOW_DAYS = 365
T = TypeVar("T")


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    PUSH = "push"
    POST = "post"


class Outcome(StrEnum):
    """What a sending service reports back about one message."""

    DELIVERED = "delivered"
    BOUNCED = "bounced"
    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    COMPLAINED = "complained"


OUTCOMES = tuple(o.value for o in Outcome)


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    LAUNCHING = "launching"
    LAUNCHED = "launched"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class InvalidCampaignTransition(DomainError):
    """The campaign is not in a state that allows the step (409)."""

    code = "invalid-transition"


def _checked(parse: Callable[[], T]) -> T:
    """A ``domain.values`` parser's refusal as the ``ValueError`` pydantic reports at the
    field's path."""
    try:
        return parse()
    except InvalidInput as error:
        raise ValueError(error.reason) from None


def _decimal_text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError('must be a decimal string such as "12.50"')
    amount = _checked(lambda: parse_amount(value))
    return format(amount.normalize(), "f")  # one form: "0.1", never "0.10"


def _text(kind: Text, max_length: int, *, required: bool = False) -> Any:
    """A pydantic ``before`` validator applying the text policy (:mod:`domain.text_policy`):
    checked, NFC, trimmed; empty is None (refused when ``required``)."""

    def validate(value: object) -> str | None:
        text = _checked(lambda: normalise_text("value", value, kind=kind, max_length=max_length))
        if text is None and required:
            raise ValueError("is required")
        return text

    return validate


class Conversion(BaseModel):
    """A conversion: a purchase within ``window_days`` of exposure (the targeting event's
    business time), of at least ``min_amount`` in ``currency`` (revenue counts purchases in
    that currency only), optionally with a line item of ``category`` or ``sku``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    window_days: int = Field(default=30, ge=1, le=MAX_WINDOW_DAYS, strict=True)
    currency: str = "EUR"
    min_amount: str | None = None
    category: str | None = None
    sku: str | None = None

    _labels = field_validator("category", "sku", mode="before")(_text(Text.IDENTIFIER, 100))

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: object) -> str:
        return _checked(lambda: normalise_currency(value))

    @field_validator("min_amount", mode="before")
    @classmethod
    def _min_amount(cls, value: object) -> str | None:
        return None if value is None else _decimal_text(value)


class Cost(BaseModel):
    """What the campaign cost, in the conversion's currency (for ROI)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    amount: str
    currency: str

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: object) -> str:
        return _decimal_text(value)

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: object) -> str:
        return _checked(lambda: normalise_currency(value))


class CampaignSpec(BaseModel):
    """What a campaign is: ``{name, purpose, channel, audience, content_ref?, scheduled_at?,
    control_fraction, conversion, cost?}``. ``control_fraction`` is a decimal string in
    ``[0.01, 0.99]`` (the share of the eligible audience held out as control)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    purpose: ConsentPurpose
    channel: Channel
    audience: Audience
    content_ref: str | None = None
    scheduled_at: datetime | None = None
    control_fraction: str = "0.1"
    conversion: Conversion = Conversion()
    cost: Cost | None = None

    _name = field_validator("name", mode="before")(_text(Text.LINE, 200, required=True))
    _content_ref = field_validator("content_ref", mode="before")(_text(Text.IDENTIFIER, 500))

    @field_validator("control_fraction", mode="before")
    @classmethod
    def _fraction(cls, value: object) -> str:
        text = _decimal_text(value)
        if not Decimal("0.01") <= Decimal(text) <= Decimal("0.99"):
            raise ValueError("must be between 0.01 and 0.99")
        return text

    @field_validator("scheduled_at", mode="after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _checked(lambda: check_aware("scheduled_at", value))

    def first_problem(self) -> tuple[str, str] | None:
        """A problem across fields: the cost in another currency than the conversion's."""
        if self.cost is not None and self.cost.currency != self.conversion.currency:
            return "cost.currency", f"must be the conversion currency {self.conversion.currency}"
        return None


def parse_spec(document: object) -> dict[str, Any]:
    """``document`` validated, in canonical form (defaults filled in, times in UTC text), or
    :class:`InvalidInput` naming the first offending field as a dotted path
    (``conversion.window_days``)."""
    if not isinstance(document, dict):
        raise InvalidInput("campaign", "must be an object")
    try:
        spec = CampaignSpec.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "campaign"
        raise InvalidInput(where, str(first["msg"]).removeprefix("Value error, ")) from None
    problem = spec.first_problem()
    if problem is not None:
        raise InvalidInput(*problem)
    dumped: dict[str, Any] = spec.model_dump(mode="json")
    dumped["audience"] = canonical(spec.audience)
    if spec.scheduled_at is not None:
        dumped["scheduled_at"] = utc_text(spec.scheduled_at)
    return dumped


def assign(assignment_key: str, campaign_id: UUID, customer_id: UUID, control_fraction: str) -> str:
    """``treatment`` or ``control`` for one customer: the first 64 bits of
    HMAC-SHA256(key, "<campaign>:<customer>") read as a uniform number in [0, 1), control
    when below the fraction. Deterministic; independent between campaigns (distinct keys)."""
    digest = hmac.new(
        bytes.fromhex(assignment_key), f"{campaign_id}:{customer_id}".encode(), hashlib.sha256
    ).digest()
    uniform = Decimal(int.from_bytes(digest[:8], "big")) / Decimal(2**64)
    return CONTROL if uniform < Decimal(control_fraction) else TREATMENT


class Campaign(Aggregate):
    """A campaign's spec and lifecycle; see the module docstring."""

    spec: dict[str, Any]
    assignment_key: str
    status: str
    created_at: datetime
    launch: dict[str, Any] | None
    outcome: dict[str, Any] | None
    cancel_reason: str | None

    def __init__(self) -> None:
        """State is set by the events' ``apply``."""

    class Created(LoggedEvent, Aggregate.Created):
        TYPE: ClassVar[str] = "campaign.created"
        spec: dict[str, Any]
        assignment_key: str

        def apply(self, aggregate: Any) -> None:
            aggregate.spec, aggregate.assignment_key = self.spec, self.assignment_key
            aggregate.status = CampaignStatus.DRAFT.value
            aggregate.created_at = self.occurred_at
            aggregate.launch = aggregate.outcome = aggregate.cancel_reason = None

    class Updated(LoggedEvent):
        TYPE: ClassVar[str] = "campaign.updated"
        spec: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.spec = self.spec

    class Scheduled(LoggedEvent):
        TYPE: ClassVar[str] = "campaign.scheduled"
        scheduled_at: str

        def apply(self, aggregate: Any) -> None:
            aggregate.spec = {**aggregate.spec, "scheduled_at": self.scheduled_at}
            aggregate.status = CampaignStatus.SCHEDULED.value

    class Cancelled(LoggedEvent):
        TYPE: ClassVar[str] = "campaign.cancelled"
        reason: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.status, aggregate.cancel_reason = CampaignStatus.CANCELLED.value, self.reason

    class LaunchStarted(LoggedEvent):
        """The audience is frozen at store ``position``, under this frequency cap."""

        TYPE: ClassVar[str] = "campaign.launch_started"
        position: int
        frequency_cap: dict[str, int]

        def apply(self, aggregate: Any) -> None:
            aggregate.status = CampaignStatus.LAUNCHING.value
            aggregate.launch = {
                "position": self.position,
                "frequency_cap": self.frequency_cap,
                "started_at": utc_text(self.occurred_at),
            }

    class Launched(LoggedEvent):
        """Counts of the launch: ``{audience, treatment, control, excluded: {reason: n}}``."""

        TYPE: ClassVar[str] = "campaign.launched"
        counts: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.status, aggregate.outcome = CampaignStatus.LAUNCHED.value, self.counts
            aggregate.launch = {**aggregate.launch, "launched_at": utc_text(self.occurred_at)}

    class Completed(LoggedEvent):
        TYPE: ClassVar[str] = "campaign.completed"

        def apply(self, aggregate: Any) -> None:
            aggregate.status = CampaignStatus.COMPLETED.value

    @classmethod
    def create(
        cls,
        document: object,
        meta: Meta,
        assignment_key: str | None = None,
        campaign_id: UUID | None = None,
    ) -> Campaign:
        """A draft campaign (``document`` checked by :func:`parse_spec`). ``assignment_key``
        (64 hex digits; default: random) and ``campaign_id`` (default: random) together
        reproduce another experiment's split: the group is a keyed hash of both."""
        key = secrets.token_hex(32) if assignment_key is None else assignment_key
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise InvalidInput("assignment_key", "must be 64 lowercase hex digits")
        return cls._create(
            cls.Created,
            id=campaign_id or uuid4(),
            spec=parse_spec(document),
            assignment_key=key,
            **meta.fields(),
        )

    def _require(self, step: str, *allowed: CampaignStatus) -> None:
        if self.status not in allowed:
            raise InvalidCampaignTransition(
                f"cannot {step} a {self.status} campaign",
                campaign_id=str(self.id),
                campaign_status=self.status,
            )

    def update(self, document: object, meta: Meta) -> bool:
        """Replace the spec (before the launch only); False when unchanged."""
        self._require("edit", CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
        spec = parse_spec(document)
        if spec == self.spec:
            return False
        self.trigger_event(self.Updated, spec=spec, **meta.fields())
        return True

    def schedule(self, at: datetime, meta: Meta) -> None:
        self._require("schedule", CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
        self.trigger_event(
            self.Scheduled, scheduled_at=utc_text(check_aware("at", at)), **meta.fields()
        )

    def cancel(self, reason: str | None, meta: Meta) -> None:
        self._require("cancel", CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
        text = normalise_text("reason", reason, kind=Text.LINE, max_length=500)
        self.trigger_event(self.Cancelled, reason=text, **meta.fields())

    def start_launch(self, position: int, frequency_cap: dict[str, int], meta: Meta) -> bool:
        """Freeze the audience at ``position``; False when already launching (a resumed
        launch keeps its first position)."""
        if self.status == CampaignStatus.LAUNCHING:
            return False
        self._require("launch", CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
        self.trigger_event(
            self.LaunchStarted, position=position, frequency_cap=frequency_cap, **meta.fields()
        )
        return True

    def finish_launch(self, counts: dict[str, Any], meta: Meta) -> None:
        self._require("finish the launch of", CampaignStatus.LAUNCHING)
        self.trigger_event(self.Launched, counts=counts, **meta.fields())

    def complete(self, meta: Meta) -> None:
        self._require("complete", CampaignStatus.LAUNCHED)
        self.trigger_event(self.Completed, **meta.fields())

    @property
    def launch_time(self) -> datetime:
        """The business time of the launch's start: every member's exposure."""
        assert self.launch is not None
        return datetime.fromisoformat(self.launch["started_at"])

    def group_of(self, customer_id: UUID) -> str:
        return assign(self.assignment_key, self.id, customer_id, self.spec["control_fraction"])

    def view(self) -> dict[str, Any]:
        """The public shape (``GET /v1/campaigns/{id}``); the assignment key stays inside."""
        return {
            "campaign_id": str(self.id),
            **self.spec,
            "status": self.status,
            "launch": self.launch,
            "counts": self.outcome,
            "cancel_reason": self.cancel_reason,
            "created_at": utc_text(self.created_at),
            "version": self.version,
        }
