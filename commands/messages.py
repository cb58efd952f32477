"""Command messages: one type per action, the same for HTTP, Kafka, CSV import and the CLI.

Fields arrive as the caller sent them, with JSON types checked strictly (no ``"7"`` for 7, no
``1`` or ``"yes"`` for true, no unix numbers for times; see :data:`Integer`, :data:`Flag`,
:data:`Moment`, :data:`Amount`, which the HTTP request models share); handlers normalise values
through ``domain.values`` so every edge gets identical cleaning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar
from uuid import UUID

import orjson
from pydantic import BeforeValidator, ConfigDict, TypeAdapter, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError

from domain.errors import InvalidInput
from domain.text_policy import check_key
from domain.values import (
    MAX_SAFE_INTEGER,
    check_flag,
    check_integer,
    check_score,
    parse_amount,
    parse_timestamp,
)


def _checked(parse: Callable[[str, object], Any]) -> BeforeValidator:
    """A pydantic validator running a ``domain.values`` parser (its refusal, as a pydantic error)."""

    def validate(value: object) -> Any:
        try:
            return parse("value", value)
        except InvalidInput as error:
            raise PydanticCustomError("invalid", error.reason) from None

    return BeforeValidator(validate)


Integer = Annotated[int, _checked(check_integer)]
"""A JSON integer: ``true``, ``"7"`` and ``7.0`` are refused."""
Flag = Annotated[bool, _checked(check_flag)]
"""A JSON boolean: ``1``, ``"yes"`` and ``"false"`` are refused."""
Moment = Annotated[datetime, _checked(parse_timestamp)]
"""An RFC 3339 date-time with offset, held in UTC (:func:`domain.values.parse_timestamp`)."""
Amount = Annotated[
    Decimal | str,
    _checked(lambda _, value: parse_amount(value)),
    WithJsonSchema(
        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,4})?$", "examples": ["12.50"]}
    ),
]
"""A decimal string such as ``"12.50"`` (:func:`domain.values.parse_amount`)."""


@dataclass(frozen=True, kw_only=True)
class CustomerRef:
    """A customer named by one of their external ids: ``{"system": "shop", "id": "00042"}``
    (canonical forms: :mod:`domain.external_ids`)."""

    __pydantic_config__ = ConfigDict(extra="forbid")
    system: str
    id: str


@dataclass(frozen=True, kw_only=True)
class Command:
    """Base: the target customer (``customer_id``, or ``customer_ref`` naming one of their
    external ids), optimistic concurrency, idempotency, and the business time ``occurred_at``
    of the events it records (default: now; README, "Business time")."""

    NAME: ClassVar[str] = ""
    LATER: ClassVar[frozenset[str]] = frozenset({"customer_ref", "occurred_at"})
    __pydantic_config__ = ConfigDict(extra="forbid")
    customer_id: UUID | None = None
    customer_ref: CustomerRef | None = None
    expected_version: Integer | None = None
    idempotency_key: str | None = None
    occurred_at: Moment | None = None

    def __post_init__(self) -> None:
        """The fields every command path reads before any handler runs are checked here."""
        if self.idempotency_key is not None:
            check_key("idempotency_key", self.idempotency_key)
        check_score("expected_version", self.expected_version, 0, MAX_SAFE_INTEGER)

    def digest(self) -> str:
        """Fingerprint of the request (without its idempotency key). Fields a command type
        gained after its release (:attr:`LATER`) are left out while unset, so the fingerprint
        of a request that does not use them stays what it was: a retry across the upgrade is
        still recognised. A request not yet validated may hold what orjson cannot encode
        (it is refused later, so it was never recorded): it gets a fingerprint of its own."""
        body = asdict(self)
        body.pop("idempotency_key")
        for name in self.LATER:
            if body[name] in (None, {}):
                del body[name]
        body["command"] = self.NAME
        try:
            raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS, default=str)
        except TypeError:  # not yet validated: unpaired surrogates, integers beyond 64 bits
            raw = b"unencodable:" + json.dumps(body, sort_keys=True, default=str).encode()
        return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, kw_only=True)
class RegisterCustomer(Command):
    """``customer_id`` (optional) is the new customer's id; ``customer_ref`` (optional) is one
    more external id, as if in ``external_ids``. If a live customer already holds one of the
    external ids, that customer is the outcome (``existing``) and nothing is recorded."""

    NAME = "register"
    LATER = frozenset({"customer_ref", "occurred_at", "external_ids"})
    name: str
    email: str | None = None
    phone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    external_ids: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    lifecycle_stage: str = "prospect"


@dataclass(frozen=True, kw_only=True)
class UpdateProfile(Command):
    """Only the fields given change; ``attributes`` and ``external_ids`` are patches (null
    removes a key)."""

    NAME = "update"
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RecordContact(Command):
    NAME = "contact"
    LATER = frozenset({"customer_ref"})  # occurred_at came with it
    channel: str
    direction: str
    kind: str = "other"
    subject: str | None = None
    summary: str | None = None
    outcome: str | None = None


@dataclass(frozen=True, kw_only=True)
class TagCustomer(Command):
    NAME = "tag"
    tag: str


@dataclass(frozen=True, kw_only=True)
class UntagCustomer(Command):
    NAME = "untag"
    tag: str


@dataclass(frozen=True, kw_only=True)
class RecordPurchase(Command):
    NAME = "purchase"
    LATER = frozenset({"customer_ref"})  # occurred_at came with it
    order_id: str
    amount: Amount
    currency: str
    items: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class RefundPurchase(Command):
    """A recorded order refunded or cancelled: it stops counting as a purchase (and the
    loyalty policy takes back its points)."""

    NAME = "refund"
    order_id: str
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class RecordFeedback(Command):
    NAME = "feedback"
    nps: Integer | None = None
    csat: Integer | None = None
    comment: str | None = None


@dataclass(frozen=True, kw_only=True)
class SetConsent(Command):
    NAME = "consent"
    LATER = frozenset({"customer_ref"})  # occurred_at came with it
    purpose: str
    granted: Flag
    source: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChangeLifecycleStage(Command):
    NAME = "lifecycle"
    stage: str
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChurnCustomer(Command):
    NAME = "churn"
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class ReactivateCustomer(Command):
    NAME = "reactivate"
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class MergeCustomers(Command):
    """``customer_id`` is the survivor; ``duplicate_id`` is merged into it."""

    NAME = "merge"
    duplicate_id: UUID


@dataclass(frozen=True, kw_only=True)
class UnmergeCustomers(Command):
    NAME = "unmerge"
    duplicate_id: UUID


@dataclass(frozen=True, kw_only=True)
class EraseCustomer(Command):
    NAME = "erase"
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class EarnPoints(Command):
    """A lot of points; ``order_id`` names the purchase that earned them, ``expires_at`` when
    they expire (default: never)."""

    NAME = "earn_points"
    LATER = frozenset({"customer_ref", "occurred_at", "order_id", "expires_at"})
    points: Integer
    reason: str | None = None
    order_id: str | None = None
    expires_at: Moment | None = None


@dataclass(frozen=True, kw_only=True)
class RedeemPoints(Command):
    NAME = "redeem_points"
    points: Integer
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExpirePoints(Command):
    NAME = "expire_points"
    points: Integer
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class RevokePoints(Command):
    """Take back the points refunded order ``order_id`` earned (at most the balance)."""

    NAME = "revoke_points"
    points: Integer
    order_id: str
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChangeTier(Command):
    """``spend`` (currency -> decimal string) is the spend that decided an automatic change."""

    NAME = "tier"
    LATER = frozenset({"customer_ref", "occurred_at", "reason", "spend"})
    tier: str
    reason: str | None = None
    spend: dict[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class RecordCampaignOutcome(Command):
    """A sending service's report on a campaign message: ``outcome`` is one of
    :data:`domain.campaign.OUTCOMES`; ``hard`` only with ``bounced``."""

    NAME = "campaign_outcome"
    campaign_id: str
    outcome: str
    hard: Flag = False


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.NAME: cls
    for cls in (
        RegisterCustomer,
        UpdateProfile,
        RecordContact,
        TagCustomer,
        UntagCustomer,
        RecordPurchase,
        RefundPurchase,
        RecordFeedback,
        SetConsent,
        ChangeLifecycleStage,
        ChurnCustomer,
        ReactivateCustomer,
        MergeCustomers,
        UnmergeCustomers,
        EraseCustomer,
        EarnPoints,
        RedeemPoints,
        ExpirePoints,
        RevokePoints,
        ChangeTier,
        RecordCampaignOutcome,
    )
}
_ADAPTERS = {name: TypeAdapter(cls) for name, cls in COMMAND_TYPES.items()}
PROFILE_FIELDS = frozenset({"name", "email", "phone", "attributes", "external_ids"})


def parse_command(doc: object) -> Command:
    """Build a command from plain data ``{"type": ..., **fields}`` (batch items, Kafka).

    ``update`` takes the profile fields at the top level, like ``PATCH``. Any problem is an
    :class:`InvalidInput` naming the offending field.
    """
    if not isinstance(doc, dict):
        raise InvalidInput("command", "must be an object")
    body = dict(doc)
    kind = body.pop("type", None)
    adapter = _ADAPTERS.get(kind) if isinstance(kind, str) else None
    if adapter is None:
        raise InvalidInput("type", f"unknown command type {kind!r}; one of {sorted(_ADAPTERS)}")
    if kind == UpdateProfile.NAME and "changes" not in body:
        body["changes"] = {k: body.pop(k) for k in list(body) if k in PROFILE_FIELDS}
    try:
        command = adapter.validate_python(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "command"
        raise InvalidInput(where, first["msg"]) from None
    assert isinstance(command, Command)
    return command
