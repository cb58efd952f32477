"""Write routes: each turns a request into one command (ARCHITECTURE.md §4)."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response

from api import deps
from api import schemas as s
from api.auth import require
from commands import messages as m
from domain.errors import DomainError, InvalidInput, VersionConflict
from infra.api_keys import Role

router = APIRouter(prefix="/v1", tags=["write"], dependencies=[require(Role.WRITER)])
ADMIN = [require(Role.ADMIN)]
IdempotencyKey = Annotated[str | None, Header(max_length=200, description="Retry-safe writes")]
IfMatch = Annotated[str | None, Header(description='Expected version, e.g. "3"')]
ENTITY_TAG = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')


class PreconditionRequired(DomainError):
    code = "precondition-required"


class PreconditionFailed(Exception):
    """If-Match named another version (412), or a required If-Match was missing (428)."""

    def __init__(self, status: int, error: DomainError) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error


def _expected(if_match: str | None, *, required: bool = False) -> int | None:
    if if_match is None:
        if required:
            missing = PreconditionRequired("If-Match with the current version is required here")
            raise PreconditionFailed(428, missing)
        return None
    match = ENTITY_TAG.match(if_match.strip())
    if match is None:
        raise InvalidInput("If-Match", 'must be a version entity tag such as "3"')
    return int(match.group(1))


def run(request: Request, response: Response, command: m.Command) -> s.WriteResult:
    """Execute one command for the caller; answer with its result and ETag."""
    svc = deps.services(request)
    try:
        outcome = svc.commands.execute(command, deps.context(request, deps.actor(request)))
    except VersionConflict as error:
        if command.expected_version is not None:
            raise PreconditionFailed(412, error) from None
        raise
    response.headers["ETag"] = f'"{outcome.version}"'
    return s.WriteResult(
        customer_id=str(outcome.customer_id),
        version=outcome.version or 0,
        position=outcome.position,
    )


@router.post("/customers", status_code=201, response_model=s.WriteResult, responses=s.REGISTER)
def register_customer(
    body: s.RegisterCustomerRequest,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    """Register a customer; a taken email is a 409 naming the existing customer."""
    result = run(
        request, response, m.RegisterCustomer(**body.model_dump(), idempotency_key=idempotency_key)
    )
    response.headers["Location"] = f"/v1/customers/{result.customer_id}"
    return result


@router.patch("/customers/{customer_id}", response_model=s.WriteResult, responses=s.PATCH)
def update_customer(
    customer_id: UUID,
    body: s.UpdateProfileRequest,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    """Change profile fields; requires ``If-Match`` with the current version."""
    changes = body.model_dump(exclude_unset=True)
    command = m.UpdateProfile(
        customer_id=customer_id,
        changes=changes,
        expected_version=_expected(if_match, required=True),
        idempotency_key=idempotency_key,
    )
    return run(request, response, command)


@router.post(
    "/customers/{customer_id}/contacts", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def record_contact(
    customer_id: UUID,
    body: s.ContactRequest,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    command = m.RecordContact(
        customer_id=customer_id,
        **body.model_dump(),
        expected_version=_expected(if_match),
        idempotency_key=idempotency_key,
    )
    return run(request, response, command)


@router.put(
    "/customers/{customer_id}/tags/{tag}", response_model=s.WriteResult, responses=s.TAG_PUT
)
def tag_customer(
    customer_id: UUID,
    tag: str,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    command = m.TagCustomer(
        customer_id=customer_id,
        tag=tag,
        expected_version=_expected(if_match),
        idempotency_key=idempotency_key,
    )
    return run(request, response, command)


@router.delete(
    "/customers/{customer_id}/tags/{tag}", response_model=s.WriteResult, responses=s.CUSTOMER_DELETE
)
def untag_customer(
    customer_id: UUID,
    tag: str,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    command = m.UntagCustomer(
        customer_id=customer_id,
        tag=tag,
        expected_version=_expected(if_match),
        idempotency_key=idempotency_key,
    )
    return run(request, response, command)


@router.post(
    "/customers/{customer_id}/purchases", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def record_purchase(
    customer_id: UUID,
    body: s.PurchaseRequest,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    """Record an order once (same order id again is a no-op; other amount is a 409)."""
    fields = body.model_dump()
    fields["items"] = [item for item in fields["items"]]
    command = m.RecordPurchase(
        customer_id=customer_id,
        **fields,
        expected_version=_expected(if_match),
        idempotency_key=idempotency_key,
    )
    return run(request, response, command)


@router.post(
    "/customers/{customer_id}/feedback", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def record_feedback(
    customer_id: UUID,
    body: s.FeedbackRequest,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    command = m.RecordFeedback(
        customer_id=customer_id,
        **body.model_dump(),
        expected_version=_expected(if_match),
        idempotency_key=idempotency_key,
    )
    return run(request, response, command)


@router.put(
    "/customers/{customer_id}/consents/{purpose}",
    response_model=s.WriteResult,
    responses=s.CUSTOMER_WRITE,
)
def set_consent(
    customer_id: UUID,
    purpose: str,
    body: s.ConsentRequest,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    command = m.SetConsent(
        customer_id=customer_id,
        purpose=purpose,
        **body.model_dump(),
        expected_version=_expected(if_match),
        idempotency_key=idempotency_key,
    )
    return run(request, response, command)


@router.post(
    "/customers/{customer_id}/lifecycle", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def change_stage(
    customer_id: UUID,
    body: s.LifecycleRequest,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    command = m.ChangeLifecycleStage(
        customer_id=customer_id,
        **body.model_dump(),
        expected_version=_expected(if_match),
        idempotency_key=idempotency_key,
    )
    return run(request, response, command)


@router.post(
    "/customers/{customer_id}/churn", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def churn(
    customer_id: UUID,
    request: Request,
    response: Response,
    body: s.ReasonRequest | None = None,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    reason = body.reason if body else None
    return run(
        request,
        response,
        m.ChurnCustomer(
            customer_id=customer_id,
            reason=reason,
            expected_version=_expected(if_match),
            idempotency_key=idempotency_key,
        ),
    )


@router.post(
    "/customers/{customer_id}/reactivate", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def reactivate(
    customer_id: UUID,
    request: Request,
    response: Response,
    body: s.ReasonRequest | None = None,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    reason = body.reason if body else None
    return run(
        request,
        response,
        m.ReactivateCustomer(
            customer_id=customer_id,
            reason=reason,
            expected_version=_expected(if_match),
            idempotency_key=idempotency_key,
        ),
    )


def _uuid(field: str, value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput(field, "must be a UUID") from None


@router.post(
    "/customers/{customer_id}/merge",
    response_model=s.WriteResult,
    dependencies=ADMIN,
    responses=s.CUSTOMER_WRITE,
)
def merge(
    customer_id: UUID,
    body: s.MergeRequest,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    """Merge ``duplicate_id`` into this customer (this id survives)."""
    command = m.MergeCustomers(
        customer_id=customer_id,
        duplicate_id=_uuid("duplicate_id", body.duplicate_id),
        expected_version=_expected(if_match),
        idempotency_key=idempotency_key,
    )
    return run(request, response, command)


@router.post(
    "/customers/{customer_id}/unmerge",
    response_model=s.WriteResult,
    dependencies=ADMIN,
    responses=s.CUSTOMER_WRITE,
)
def unmerge(
    customer_id: UUID,
    body: s.MergeRequest,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    command = m.UnmergeCustomers(
        customer_id=customer_id,
        duplicate_id=_uuid("duplicate_id", body.duplicate_id),
        expected_version=_expected(if_match),
        idempotency_key=idempotency_key,
    )
    return run(request, response, command)


@router.delete(
    "/customers/{customer_id}",
    response_model=s.WriteResult,
    dependencies=ADMIN,
    responses=s.CUSTOMER_DELETE,
)
def erase(
    customer_id: UUID,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> s.WriteResult:
    """Erase a customer's personal data (right to erasure)."""
    return run(
        request,
        response,
        m.EraseCustomer(
            customer_id=customer_id,
            expected_version=_expected(if_match),
            idempotency_key=idempotency_key,
        ),
    )


@router.post("/commands:batch", response_model=s.BatchResult, responses=s.BATCH)
def batch(body: s.BatchRequest, request: Request) -> s.BatchResult:
    """Up to 1,000 commands in one store transaction; one outcome per command, in order."""
    parsed: list[m.Command | DomainError] = []
    for doc in body.commands:
        try:
            parsed.append(m.parse_command(doc))
        except DomainError as error:
            parsed.append(error)
    valid = [c for c in parsed if isinstance(c, m.Command)]
    svc = deps.services(request)
    outcomes = iter(svc.commands.execute_batch(valid, deps.context(request, deps.actor(request))))
    results = [
        {"status": "rejected", "problem": p.to_dict()}
        if isinstance(p, DomainError)
        else next(outcomes).to_dict()
        for p in parsed
    ]
    return s.BatchResult.model_validate({"results": results})
