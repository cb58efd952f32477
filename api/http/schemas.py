"""Request and response models of the HTTP contract (docs/architecture.md, "Contracts:
HTTP"), with examples.

Field types are the command messages' own (:mod:`commands.messages`: strict JSON integers and
booleans, RFC 3339 times), so a value is accepted or refused alike over HTTP and in a batch.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from commands.messages import COMMAND_TYPES, Flag, Integer, Moment, UpdateProfile

EXAMPLE_ID = "3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e"
Attributes = Annotated[
    dict[str, Any],
    Field(description="snake_case keys; string, number, boolean or null (removes) values"),
]
ExternalIds = Annotated[
    dict[str, Any],
    Field(
        description="{system: id}: ids of this customer in other systems, each unique per "
        "system among live customers; system a slug (case-insensitive), id a string "
        "(case and leading zeros kept); null removes a system (updates)",
        examples=[{"shop": "00042", "legacy_crm": "C-17"}],
    ),
]
BusinessTime = Annotated[
    Moment | None,
    Field(
        description="business time of the event(s): RFC 3339 with offset; default now; not "
        "ahead of the store's clock by more than 5 minutes, not before "
        "CLIENTELE_BUSINESS_TIME_FLOOR, not before the customer's registration",
        examples=["2026-05-01T12:00:00Z"],
    ),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _example(**example: Any) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


class RegisterCustomerRequest(Body):
    model_config = _example(
        name="Ada Lovelace",
        email="ada@example.com",
        phone="+44 20 7946 0958",
        attributes={"city": "London"},
        external_ids={"shop": "00042"},
        source="web",
        occurred_at="1997-03-01T09:30:00Z",
    )
    name: str = Field(max_length=1000)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    attributes: Attributes = Field(default_factory=dict)
    external_ids: ExternalIds = Field(default_factory=dict)
    source: str | None = Field(default=None, max_length=100)
    lifecycle_stage: str = Field(default="prospect", max_length=32)
    occurred_at: BusinessTime = None


class UpdateProfileRequest(Body):
    model_config = _example(
        phone="+44 20 7946 0959", attributes={"city": "Paris", "vip_since": None}
    )
    name: str | None = Field(default=None, max_length=1000)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    attributes: Attributes | None = None
    external_ids: ExternalIds | None = None
    occurred_at: BusinessTime = None


class ContactRequest(Body):
    model_config = _example(
        channel="phone", direction="outbound", kind="care", subject="Follow-up", outcome="resolved"
    )
    channel: str = Field(max_length=32)
    direction: str = Field(max_length=32)
    kind: str = Field(default="other", max_length=32)
    subject: str | None = Field(default=None, max_length=1000)
    summary: str | None = Field(default=None, max_length=8000)
    outcome: str | None = Field(default=None, max_length=1000)
    occurred_at: BusinessTime = None


class PurchaseItem(BaseModel):
    """A line item: free JSON keys, and the recognised ones checked by the domain
    (:func:`domain.payloads.recognised`, errors name ``items[i].<key>``)."""

    model_config = ConfigDict(extra="allow")
    sku: str | None = Field(default=None, max_length=100)
    category: str | None = Field(default=None, max_length=100)
    quantity: Any = Field(default=None, description="a number > 0, at most 1,000,000")
    unit_price: Any = Field(default=None, description="money per unit: '7.50' (or a number)")
    unit_cost: Any = Field(default=None, description="cost per unit, for margins: '3.10'")


class PurchaseRequest(Body):
    model_config = _example(
        order_id="A-1001", amount="12.50", currency="EUR", items=[{"sku": "tea", "quantity": 2}]
    )
    order_id: str = Field(max_length=200)
    amount: str = Field(max_length=40, examples=["12.50"])
    currency: str = Field(max_length=8)
    occurred_at: BusinessTime = None
    items: list[PurchaseItem] = Field(default_factory=list, max_length=500)


class RefundRequest(Body):
    model_config = _example(order_id="A-1001", reason="returned")
    order_id: str = Field(max_length=200)
    reason: str | None = Field(default=None, max_length=1000)
    occurred_at: BusinessTime = None


class RedeemRequest(Body):
    model_config = _example(points=50, reason="voucher")
    points: Integer = Field(ge=1)
    reason: str | None = Field(default=None, max_length=1000)
    occurred_at: BusinessTime = None


class FeedbackRequest(Body):
    model_config = _example(nps=9, csat=5, comment="Quick and friendly")
    nps: Integer | None = Field(default=None, ge=0, le=10)
    csat: Integer | None = Field(default=None, ge=1, le=5)
    comment: str | None = Field(default=None, max_length=8000)
    occurred_at: BusinessTime = None


class ConsentRequest(Body):
    model_config = _example(granted=True, source="newsletter-form")
    granted: Flag
    source: str | None = Field(default=None, max_length=200)
    occurred_at: BusinessTime = None


class LifecycleRequest(Body):
    model_config = _example(stage="loyal", reason="5th order")
    stage: str = Field(max_length=32)
    reason: str | None = Field(default=None, max_length=1000)
    occurred_at: BusinessTime = None


class ReasonRequest(Body):
    model_config = _example(reason="moved abroad")
    reason: str | None = Field(default=None, max_length=1000)
    occurred_at: BusinessTime = None


class TimeRequest(Body):
    """An optional body of the routes that need nothing else: the business time."""

    model_config = _example(occurred_at="2026-05-01T12:00:00Z")
    occurred_at: BusinessTime = None


class MergeRequest(Body):
    model_config = _example(duplicate_id=EXAMPLE_ID)
    duplicate_id: UUID
    occurred_at: BusinessTime = None


class WriteResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"customer_id": EXAMPLE_ID, "version": 1, "position": 42}]}
    )
    customer_id: str
    version: int
    position: int | None


class PossibleDuplicate(BaseModel):
    customer_id: str
    probability: float
    evidence: dict[str, dict[str, Any]]


class RegisterResult(WriteResult):
    """``existing``: a live customer already held one of the external ids; it is the outcome,
    nothing was recorded and the other fields were not applied (200 instead of 201).
    ``possible_duplicates``: live customers the new one probably duplicates (a registration
    through ``POST /v1/customers``; see ``GET /v1/duplicates``), most probable first."""

    existing: bool = False
    possible_duplicates: list[PossibleDuplicate] = Field(default_factory=list)


class BatchRequest(Body):
    model_config = _example(commands=[{"type": "tag", "customer_id": EXAMPLE_ID, "tag": "vip"}])
    # Each command is parsed by commands.messages.parse_command, so a bad one is a rejected
    # result beside the others, never a 422 of the whole batch; the OpenAPI shows the union of
    # command schemas (document_batch_commands).
    commands: list[dict[str, Any]] = Field(
        min_length=1, max_length=1000, description="Commands, each an object with its `type`"
    )


class BatchItemResult(BaseModel):
    status: Literal["accepted", "rejected"]
    customer_id: str | None = None
    version: int | None = None
    position: int | None = None
    existing: bool = False
    problem: dict[str, Any] | None = None
    possible_duplicates: list[PossibleDuplicate] = Field(default_factory=list)


class BatchResult(BaseModel):
    results: list[BatchItemResult]


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None


class Problem(BaseModel):
    """RFC 9457 problem document; ``type`` is stable (``/problems/<code>``)."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str


_DESCRIPTIONS = {
    400: "Malformed request body",
    401: "Missing, unknown or revoked API key",
    403: "The key lacks the role this route needs",
    404: "No such customer (or nobody holds the external id named)",
    409: "Conflict: taken email or external id, version, order, or state transition",
    410: "Customer erased, or merged (survivor_id names the final survivor of its merge chain)",
    411: "Chunked body without Content-Length",
    412: "If-Match matches no current version (weak tags never match; no such customer)",
    413: "Body larger than the configured limit",
    415: "Body is not application/json",
    422: "Invalid input; `field` names what is wrong (event-too-large: the event it would record "
    "exceeds the store's bound)",
    428: "If-Match is required",
    503: "Read models not yet at X-Min-Position, or the customer is parked (Retry-After); or not ready",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problem documents a route can answer with."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": schema}},
            "model": Problem,
        }
        for status in statuses
    }


AUTH = (401, 403)
BODY = (400, 411, 413, 415, 422)
CUSTOMER_WRITE = problems(*AUTH, *BODY, 404, 409, 410, 412)
REGISTER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A live customer already holds one of the external ids: that customer, "
        "existing: true, nothing recorded",
        "model": RegisterResult,
    },
    **problems(*AUTH, *BODY, 409, 410),
}
BATCH = problems(*AUTH, *BODY)
PATCH = problems(*AUTH, *BODY, 404, 409, 410, 412, 428)
CUSTOMER_READ = problems(*AUTH, 404, 410, 422, 503)
LIST_READ = problems(*AUTH, 422, 503)


# Per batch command type: what it does, and an example (each parses, see
# tests/integration/test_first_hour.py).
BATCH_COMMANDS: dict[str, tuple[str, dict[str, Any]]] = {
    "register": (
        "Register a customer (the same idempotency_key twice: the same customer)",
        {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "attributes": {"city": "London"},
            "idempotency_key": "crm-ada-17",
        },
    ),
    "update": (
        "Change profile fields, given at the top level like PATCH; attributes is a patch",
        {"customer_id": EXAMPLE_ID, "phone": "+44 20 7946 0959", "expected_version": 3},
    ),
    "contact": (
        "Record a contact (call, email, visit …)",
        {
            "customer_id": EXAMPLE_ID,
            "channel": "phone",
            "direction": "outbound",
            "kind": "care",
            "subject": "Follow-up",
            "occurred_at": "2026-05-01T12:00:00Z",
        },
    ),
    "tag": ("Add a tag", {"customer_id": EXAMPLE_ID, "tag": "vip"}),
    "untag": ("Remove a tag", {"customer_id": EXAMPLE_ID, "tag": "vip"}),
    "purchase": (
        "Record a purchase (the same order_id twice is a no-op)",
        {
            "customer_id": EXAMPLE_ID,
            "order_id": "A-1001",
            "amount": "12.50",
            "currency": "EUR",
            "occurred_at": "2026-05-01T12:00:00Z",
            "items": [{"sku": "tea", "quantity": 2}],
        },
    ),
    "feedback": (
        "Record an NPS and/or CSAT answer",
        {"customer_id": EXAMPLE_ID, "nps": 9, "csat": 5, "comment": "Quick and friendly"},
    ),
    "consent": (
        "Grant or withdraw consent for a purpose",
        {
            "customer_id": EXAMPLE_ID,
            "purpose": "email_marketing",
            "granted": True,
            "source": "newsletter-form",
        },
    ),
    "lifecycle": (
        "Move to a lifecycle stage",
        {"customer_id": EXAMPLE_ID, "stage": "loyal", "reason": "5th-order"},
    ),
    "churn": ("Mark as churned", {"customer_id": EXAMPLE_ID, "reason": "moved-abroad"}),
    "reactivate": ("Reactivate a churned customer", {"customer_id": EXAMPLE_ID}),
    "campaign_outcome": (
        "Report what became of a campaign message (unsubscribed withdraws the consent; a hard "
        "bounce makes the channel invalid)",
        {
            "customer_id": EXAMPLE_ID,
            "campaign_id": "5f8e2a1c-3b4d-4e6f-8a9b-0c1d2e3f4a5b",
            "outcome": "bounced",
            "hard": True,
        },
    ),
    "merge": (
        "Merge duplicate_id into customer_id (the survivor)",
        {"customer_id": EXAMPLE_ID, "duplicate_id": "9b1d7c4e-6f5a-4e3b-8c2d-1a0f9e8d7c6b"},
    ),
    "unmerge": (
        "Undo a merge: give back exactly what moved",
        {"customer_id": EXAMPLE_ID, "duplicate_id": "9b1d7c4e-6f5a-4e3b-8c2d-1a0f9e8d7c6b"},
    ),
    "erase": (
        "Erase the customer (crypto-shredding; duplicates merged into it too)",
        {"customer_id": EXAMPLE_ID, "reason": "gdpr-request"},
    ),
    "earn_points": (
        "Add loyalty points",
        {"customer_id": EXAMPLE_ID, "points": 120, "reason": "order-A-1001"},
    ),
    "redeem_points": (
        "Spend loyalty points",
        {"customer_id": EXAMPLE_ID, "points": 50, "reason": "voucher"},
    ),
    "expire_points": (
        "Expire loyalty points",
        {"customer_id": EXAMPLE_ID, "points": 20, "reason": "yearly-expiry"},
    ),
    "revoke_points": (
        "Take back the points a refunded order earned (at most the balance)",
        {"customer_id": EXAMPLE_ID, "points": 120, "order_id": "A-1001"},
    ),
    "refund": (
        "Refund (or cancel) a recorded order: it stops counting as a purchase",
        {"customer_id": EXAMPLE_ID, "order_id": "A-1001", "reason": "returned"},
    ),
    "tier": ("Set the loyalty tier", {"customer_id": EXAMPLE_ID, "tier": "gold"}),
}


def batch_example(name: str) -> dict[str, Any]:
    """The example command of type ``name`` (with its ``type``)."""
    return {"type": name, **BATCH_COMMANDS[name][1]}


def batch_examples() -> dict[str, dict[str, Any]]:
    """OpenAPI ``examples`` of ``POST /v1/commands:batch``: one batch per command type."""
    return {
        name: {"summary": f"{name}: {text}", "value": {"commands": [batch_example(name)]}}
        for name, (text, _) in BATCH_COMMANDS.items()
    }


COMPONENT_REF = "#/components/schemas/{model}"
"""Where pydantic's ``$ref`` point in the OpenAPI document."""


def _component(name: str) -> str:
    return "BatchCommand_" + name


def batch_command_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one batch command: ``type`` fixed to ``name`` plus the fields of
    its message (``update`` takes the profile fields at the top level, like ``PATCH``).
    Shared definitions are under ``$defs`` and referred to as OpenAPI components
    (``#/components/schemas/<name>``), where :func:`document_batch_commands` puts them."""
    cls = COMMAND_TYPES[name]
    schema = TypeAdapter(cls).json_schema(ref_template=COMPONENT_REF)
    if cls is UpdateProfile:
        profile = UpdateProfileRequest.model_json_schema()["properties"]
        schema["properties"].pop("changes")
        schema["properties"] |= profile
    schema["properties"] = {
        "type": {"type": "string", "const": name, "description": "The command type."},
        **schema["properties"],
    }
    schema["required"] = ["type", *schema.get("required", [])]
    schema["title"] = _component(name)
    schema["description"] = BATCH_COMMANDS[name][0]
    schema["examples"] = [batch_example(name)]
    return schema


def document_batch_commands(openapi: dict[str, Any]) -> dict[str, Any]:
    """Give ``openapi`` one schema per batch command type and make ``BatchRequest.commands``
    their union, discriminated by ``type``. Documentation only: the route still takes any
    objects and rejects bad ones one by one (``parse_command``)."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    refs = {name: f"#/components/schemas/{_component(name)}" for name in COMMAND_TYPES}
    for name in COMMAND_TYPES:
        schema = batch_command_schema(name)
        for shared, definition in schema.pop("$defs", {}).items():  # e.g. CustomerRef
            schemas.setdefault(shared, definition)
        schemas[_component(name)] = schema
    items = {
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "type", "mapping": refs},
    }
    schemas["BatchRequest"]["properties"]["commands"]["items"] = items
    return openapi
