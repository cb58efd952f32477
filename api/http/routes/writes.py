"""Write routes: each turns a request into one command (docs/architecture.md, "Contracts: HTTP")."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Header, Request, Response

from api.http import deps
from api.http import schemas as s
from api.http.auth import require
from api.http.batch_docs import batch_examples
from api.http.preconditions import (
    IfMatch,
    IfMatchHeader,
    NoCurrentVersion,
    PreconditionFailed,
    if_match_header,
)
from commands import messages as m
from commands.duplicates import new_customers
from domain.errors import CustomerNotFound, DomainError, VersionConflict
from domain.text_policy import check_key
from infra.api_keys import Role
from projections import duplicate_candidates

router = APIRouter(prefix="/v1", tags=["write"], dependencies=[require(Role.WRITER)])
ADMIN = [require(Role.ADMIN)]
IdempotencyKey = Annotated[str | None, Header(max_length=200, description="Retry-safe writes")]


def _idempotency_key(value: str | None) -> str | None:
    return None if value is None else check_key("Idempotency-Key", value, ascii_only=True)


class Write:
    """What every write route shares: the caller, the target, If-Match and Idempotency-Key."""

    def __init__(
        self,
        request: Request,
        response: Response,
        customer_id: UUID | None,
        if_match: IfMatchHeader | None,
        idempotency_key: str | None,
    ) -> None:
        self.request = request
        self.response = response
        self.customer_id = customer_id
        self.if_match = if_match
        self.idempotency_key = _idempotency_key(idempotency_key)

    def _expected_version(self) -> int | None:
        """The version If-Match asks for (``None``: any). Several are resolved against the
        current version; a change in between makes the command's own check fail: 412."""
        if self.if_match is None or self.if_match.any:
            return None
        versions = self.if_match.versions
        if len(versions) == 1:
            return next(iter(versions))
        current = None
        if versions and self.customer_id is not None:
            current = deps.services(self.request).store.customer(self.customer_id).version
        if current not in versions:
            named = ", ".join(f'"{v}"' for v in sorted(versions)) or "no strong entity tag"
            raise PreconditionFailed(412, NoCurrentVersion(f"If-Match names {named}"))
        return current

    def __call__(self, command_type: type[m.Command], **fields: Any) -> s.RegisterResult:
        """Execute one command for the caller; answer with its result and ETag."""
        svc = deps.services(self.request)
        try:
            command = command_type(
                customer_id=self.customer_id,
                expected_version=self._expected_version(),
                idempotency_key=self.idempotency_key,
                **fields,
            )
            outcome = svc.commands.execute(
                command, deps.context(self.request, deps.actor(self.request))
            )
        except VersionConflict as error:
            if self.if_match is not None:
                raise PreconditionFailed(412, error) from None
            raise
        except CustomerNotFound as error:
            if self.if_match is not None and error.details["customer_id"] == str(self.customer_id):
                # the target has no current version for any tag (or "*") to match
                raise PreconditionFailed(412, NoCurrentVersion(error.message)) from None
            raise
        self.response.headers["ETag"] = f'"{outcome.version}"'
        return s.RegisterResult(
            customer_id=str(outcome.customer_id),
            version=outcome.version or 0,
            position=outcome.position,
            existing=outcome.existing,
        )


def _new_customer(
    request: Request, response: Response, idempotency_key: IdempotencyKey = None
) -> Write:
    return Write(request, response, None, None, idempotency_key)


def _customer(
    customer_id: UUID,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Write:
    return Write(request, response, customer_id, if_match_header(if_match), idempotency_key)


def _customer_if_match(
    customer_id: UUID,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Write:
    return Write(
        request, response, customer_id, if_match_header(if_match, required=True), idempotency_key
    )


NewCustomerWrite = Annotated[Write, Depends(_new_customer)]
CustomerWrite = Annotated[Write, Depends(_customer)]
CustomerWriteIfMatch = Annotated[Write, Depends(_customer_if_match)]


@router.post("/customers", status_code=201, response_model=s.RegisterResult, responses=s.REGISTER)
def register_customer(body: s.RegisterCustomerRequest, write: NewCustomerWrite) -> s.RegisterResult:
    """Register a customer (201). If a live customer already holds one of the ``external_ids``,
    that customer is the answer (200, ``existing: true``; nothing recorded, the other fields
    not applied): registering by external id is idempotent. A taken email is a 409 naming the
    existing customer; external ids held by different customers are a 409
    ``external-id-conflict``."""
    result = write(m.RegisterCustomer, **body.model_dump())
    write.response.headers["Location"] = f"/v1/customers/{result.customer_id}"
    if result.existing:
        write.response.status_code = 200
    else:
        svc = deps.services(write.request)
        customer = svc.store.customer(UUID(result.customer_id))
        result.possible_duplicates = [
            s.PossibleDuplicate(**found)
            for found in duplicate_candidates.check(
                svc.read_store, result.customer_id, vars(customer)
            )
        ]
    return result


@router.patch("/customers/{customer_id}", response_model=s.WriteResult, responses=s.PATCH)
def update_customer(body: s.UpdateProfileRequest, write: CustomerWriteIfMatch) -> s.WriteResult:
    """Change profile fields; ``attributes`` and ``external_ids`` are patches (null removes);
    requires ``If-Match`` with the current version."""
    changes = body.model_dump(exclude_unset=True)
    return write(m.UpdateProfile, occurred_at=changes.pop("occurred_at", None), changes=changes)


@router.post(
    "/customers/{customer_id}/contacts", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def record_contact(body: s.ContactRequest, write: CustomerWrite) -> s.WriteResult:
    """Record a contact (call, email, visit …) with the customer."""
    return write(m.RecordContact, **body.model_dump())


@router.put(
    "/customers/{customer_id}/tags/{tag}", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def tag_customer(
    tag: str, write: CustomerWrite, body: s.TimeRequest | None = None
) -> s.WriteResult:
    """Tag the customer (tags are normalised to lower-case slugs)."""
    return write(m.TagCustomer, tag=tag, occurred_at=body.occurred_at if body else None)


@router.delete(
    "/customers/{customer_id}/tags/{tag}", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def untag_customer(
    tag: str, write: CustomerWrite, body: s.TimeRequest | None = None
) -> s.WriteResult:
    """Remove a tag."""
    return write(m.UntagCustomer, tag=tag, occurred_at=body.occurred_at if body else None)


@router.post(
    "/customers/{customer_id}/purchases", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def record_purchase(body: s.PurchaseRequest, write: CustomerWrite) -> s.WriteResult:
    """Record an order once (same order id again is a no-op; other amount is a 409)."""
    return write(m.RecordPurchase, **body.model_dump(exclude_unset=True))


@router.post(
    "/customers/{customer_id}/refunds", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def refund_purchase(body: s.RefundRequest, write: CustomerWrite) -> s.WriteResult:
    """Refund (or cancel) a recorded order: it stops counting as a purchase, and the loyalty
    policy takes back its points. The same refund again is a no-op; an order never recorded
    is a 422 naming ``order_id``."""
    return write(m.RefundPurchase, **body.model_dump())


@router.post(
    "/customers/{customer_id}/points:redeem",
    response_model=s.WriteResult,
    responses=s.CUSTOMER_WRITE,
)
def redeem_points(body: s.RedeemRequest, write: CustomerWrite) -> s.WriteResult:
    """Spend points, oldest lots first. More than the balance is a 409
    (``/problems/insufficient-points``, with ``balance`` and ``requested``): the balance never
    falls below zero."""
    return write(m.RedeemPoints, **body.model_dump())


@router.post(
    "/customers/{customer_id}/feedback", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def record_feedback(body: s.FeedbackRequest, write: CustomerWrite) -> s.WriteResult:
    """Record NPS (0-10) and/or CSAT (1-5) and a comment."""
    return write(m.RecordFeedback, **body.model_dump())


@router.put(
    "/customers/{customer_id}/consents/{purpose}",
    response_model=s.WriteResult,
    responses=s.CUSTOMER_WRITE,
)
def set_consent(purpose: str, body: s.ConsentRequest, write: CustomerWrite) -> s.WriteResult:
    """Grant or withdraw consent for one purpose."""
    return write(m.SetConsent, purpose=purpose, **body.model_dump())


@router.post(
    "/customers/{customer_id}/lifecycle", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def change_stage(body: s.LifecycleRequest, write: CustomerWrite) -> s.WriteResult:
    """Move the customer to another lifecycle stage."""
    return write(m.ChangeLifecycleStage, **body.model_dump())


@router.post(
    "/customers/{customer_id}/churn", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def churn(write: CustomerWrite, body: s.ReasonRequest | None = None) -> s.WriteResult:
    """Mark the customer churned."""
    return write(m.ChurnCustomer, **body.model_dump() if body else {})


@router.post(
    "/customers/{customer_id}/reactivate", response_model=s.WriteResult, responses=s.CUSTOMER_WRITE
)
def reactivate(write: CustomerWrite, body: s.ReasonRequest | None = None) -> s.WriteResult:
    """Bring a churned customer back."""
    return write(m.ReactivateCustomer, **body.model_dump() if body else {})


@router.post(
    "/customers/{customer_id}/merge",
    dependencies=ADMIN,
    response_model=s.WriteResult,
    responses=s.CUSTOMER_WRITE,
)
def merge(body: s.MergeRequest, write: CustomerWrite) -> s.WriteResult:
    """Merge ``duplicate_id`` into this customer (this id survives). The duplicate's external
    ids then answer for the survivor (and come back with an unmerge)."""
    return write(m.MergeCustomers, **body.model_dump())


@router.post(
    "/customers/{customer_id}/unmerge",
    dependencies=ADMIN,
    response_model=s.WriteResult,
    responses=s.CUSTOMER_WRITE,
)
def unmerge(body: s.MergeRequest, write: CustomerWrite) -> s.WriteResult:
    """Undo a merge: the survivor gives back exactly what it took over."""
    return write(m.UnmergeCustomers, **body.model_dump())


@router.delete(
    "/customers/{customer_id}",
    dependencies=ADMIN,
    response_model=s.WriteResult,
    responses=s.CUSTOMER_WRITE,
)
def erase(write: CustomerWrite, body: s.ReasonRequest | None = None) -> s.WriteResult:
    """Erase a customer's personal data (right to erasure), and every duplicate merged into
    it; a merged duplicate alone is refused (410) naming the final survivor to erase. Their
    email and external ids are released."""
    return write(m.EraseCustomer, **body.model_dump() if body else {})


@router.post("/commands:batch", response_model=s.BatchResult, responses=s.BATCH)
def batch(
    body: Annotated[s.BatchRequest, Body(openapi_examples=batch_examples())],
    request: Request,
) -> s.BatchResult:
    """Up to 1,000 commands in one store transaction; one outcome per command, in order.

    Each command is an object with a `type` and that type's fields: one `BatchCommand_<type>`
    schema per type below, and an example of each. A command that is not valid is rejected in
    its result (a `problem` naming the `field`); the others still run.
    """
    parsed: list[m.Command | DomainError] = []
    for doc in body.commands:
        try:
            parsed.append(m.parse_command(doc))
        except DomainError as error:
            parsed.append(error)
    valid = [c for c in parsed if isinstance(c, m.Command)]
    svc = deps.services(request)
    outcomes = svc.commands.execute_batch(valid, deps.context(request, deps.actor(request)))
    new = new_customers(valid, outcomes, svc.commands.default_region)
    found = {}
    if new:
        check = duplicate_candidates.RegistrationCheck(svc.read_store)
        found = dict(zip(new, check.check(list(new.values())), strict=True))
    done = iter(enumerate(outcomes))
    results = []
    for p in parsed:
        if isinstance(p, DomainError):
            results.append({"status": "rejected", "problem": p.to_dict()})
            continue
        index, outcome = next(done)
        results.append(outcome.to_dict() | {"possible_duplicates": found.get(index, [])})
    return s.BatchResult.model_validate({"results": results})
