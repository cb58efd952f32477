"""Request and response models of the HTTP contract (docs/architecture.md, "Contracts:
HTTP"), with examples.

Field types are the command messages' own (:mod:`commands.messages`: strict JSON integers and
booleans, RFC 3339 times), so a value is accepted or refused alike over HTTP and in a batch.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from commands.messages import Flag, Integer, Moment

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
