"""Read routes: profiles from the read model; time travel folds the event store."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.http import deps
from api.http import schemas as s
from api.http.auth import privacy, require
from api.http.responses import json_response, live_profile
from domain.errors import (
    CustomerNotFound,
    CustomerRefNotFound,
    InvalidInput,
)
from domain.external_ids import (
    SYSTEM_PATTERN,
    normalise_external_id,
    normalise_ref,
    normalise_system,
)
from domain.values import check_aware, normalise_tag
from infra.api_keys import Role
from infra.envelope import Envelope
from infra.lean_history import opened_history
from projections import profile_fold, profile_reads
from projections.churn import churn_risk, customer_purchases, load_fit, risk_in_view
from projections.loyalty import loyalty_view
from projections.profiles import final_survivor, find_by_external, search_profiles

router = APIRouter(prefix="/v1", tags=["read"], dependencies=[require(Role.READER)])


def _travel(
    request: Request,
    customer_id: UUID,
    as_of: datetime | None,
    known_at: datetime | None,
    version: int | None,
) -> dict[str, Any]:
    """The profile in a bitemporal view (:func:`projections.profile_fold.travel`), folded from the
    store with the same code as the live one, with its ``churn_risk`` as of the view's moment
    (``as_of``, else ``known_at``, else the business time of ``version``'s event) under the
    model version in force then (:func:`projections.churn.risk_in_view`)."""
    services = deps.services(request)
    history = opened_history(services.store, customer_id)
    events = iter(history)
    seen: list[datetime] = []  # a view by version alone notes its moment here
    viewed = events
    if as_of is None and known_at is None and version is not None:
        viewed = _noting_business_time(events, version, seen)
    state = profile_fold.travel(
        customer_id,
        viewed,
        as_of=_utc(as_of),
        known_at=_utc(known_at),
        version=version,
    )
    deque(events, maxlen=0)  # the rest is opened too: a broken seal after the view still fails
    if state is None:
        raise CustomerNotFound(customer_id)
    moment = as_of or known_at or seen[0]
    document = profile_fold.render(state)
    # the model as of the store's look at its log (opened_history looked up to the head)
    model = services.models.as_seen(history.newest)
    document["churn_risk"] = risk_in_view(model, state, moment, known_at)
    return document


def _utc(moment: datetime | None) -> datetime | None:
    """``moment`` as the same instant in UTC, the zone of every event's times, which the view
    compares it with: a datetime of another tzinfo object (pydantic's ``TzInfo(0)`` for a
    ``Z``) is compared through two ``utcoffset()`` calls each time, one of the costs of time
    travel per event. A moment UTC cannot hold (year 1 or 9999 and an offset past the edge)
    is compared as it is."""
    try:
        return None if moment is None else moment.astimezone(UTC)
    except OverflowError:
        return moment


def _noting_business_time(
    events: Iterator[Envelope], version: int, seen: list[datetime]
) -> Iterator[Envelope]:
    """``events`` as they come; ``seen`` holds the business time of the newest one up to
    ``version`` (one item)."""
    for envelope in events:
        if envelope.version <= version:
            seen[:] = [envelope.occurred_at]
        yield envelope


AsOf = Annotated[
    datetime | None,
    Query(
        description="time travel in business time: the customer as it stood at this instant "
        "(events that had happened by then; RFC 3339 with offset)"
    ),
]
KnownAt = Annotated[
    datetime | None,
    Query(
        description="time travel in recorded time: what the store knew at this instant "
        "(events recorded by then; RFC 3339 with offset); with as_of, what we knew at "
        "known_at about the customer as of as_of"
    ),
]


@router.get("/customers/{customer_id}", responses=s.CUSTOMER_READ)
async def get_customer(
    customer_id: UUID,
    request: Request,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    version: Annotated[
        int | None, Query(ge=1, description="time travel: the profile at this version")
    ] = None,
) -> Response:
    """A customer's profile (ETag = version). Erased → 410; merged → 410 naming the final
    survivor of its merge chain. One read-store snapshot: the profile row, the newest churn
    fit and (only when there is a fit) the purchases for ``churn_risk``. ``as_of``, ``known_at`` and ``version`` fold the store
    (README, "Business time": which events a view folds, in which order).

    A live customer on PostgreSQL, asked for without time travel or ``X-Min-Position``, is
    read in the event loop with one statement (:mod:`projections.profile_reads`); everything
    else takes the sync path in a worker thread. Both answer the same bytes."""
    if travels(as_of, known_at, version):
        return await run_in_threadpool(
            travel_response, request, customer_id, as_of, known_at, version
        )
    answer = await live_in_loop(request, customer_id)
    if answer is not None:
        return answer
    return await run_in_threadpool(_live_response, request, customer_id)


async def live_in_loop(request: Request, customer_id: UUID) -> Response | None:
    """GET profile's answer read in the event loop (:mod:`projections.profile_reads`), for an
    admitted caller: None unless the read models are on PostgreSQL, the request has no
    ``X-Min-Position`` and the customer is live (the sync path answers the rest)."""
    reads = None if "x-min-position" in request.headers else deps.async_reads(request)
    if reads is None:
        return None
    live = await profile_reads.live_profile(reads, customer_id)
    return None if live is None else json_response(privacy(request)(live), live["version"])


def travels(as_of: datetime | None, known_at: datetime | None, version: int | None) -> bool:
    """Whether GET profile's query asks for a view in time; :class:`InvalidInput` (422) for a
    moment without an offset."""
    for name, moment in (("as_of", as_of), ("known_at", known_at)):
        if moment is not None:
            check_aware(name, moment)
    return as_of is not None or known_at is not None or version is not None


def travel_response(
    request: Request,
    customer_id: UUID,
    as_of: datetime | None,
    known_at: datetime | None,
    version: int | None,
) -> Response:
    """The time-travel answer of an admitted caller (run in a worker thread: it reads the
    store); :class:`CustomerNotFound` when the view holds no registration."""
    document = _travel(request, customer_id, as_of, known_at, version)
    return json_response(privacy(request)(document), document["version"])


def _live_response(request: Request, customer_id: UUID) -> Response:
    """The live profile on the sync path: read-your-writes wait, then one snapshot."""
    deps.wait_for_position(request, ["profiles", "analytics", "segments"], customer_id)
    with deps.services(request).read_store.snapshot() as tx:
        live = live_profile(tx, customer_id)
        model = load_fit(tx)  # the newest fit, as the segments read model follows it
        purchases = [] if model is None else customer_purchases(tx, customer_id)
        live["churn_risk"] = churn_risk(model, purchases)
    return json_response(privacy(request)(live), live["version"])


@router.get("/customers/by-external/{system}/{external_id:path}", responses=s.CUSTOMER_READ)
def get_customer_by_external_id(
    system: Annotated[str, Path(json_schema_extra={"pattern": SYSTEM_PATTERN})],
    external_id: str,
    request: Request,
) -> Response:
    """The customer holding an external id (``external_id`` may contain ``/``). An id held by
    a merged customer answers with the FINAL survivor of its merge chain, who answers for it
    (``Content-Location`` names the profile given); nobody → 404 naming the ref; erased → 410
    (an erasure releases the ids, so that is only while the read model catches up)."""
    ref_system, ref_id = normalise_ref(system, external_id, "customer_ref")
    deps.wait_for_position(request, ["profiles"])
    customer_id, live = _holder(request, ref_system, ref_id)
    if "x-min-position" in request.headers:  # then the holder's own events, and read again
        deps.wait_for_position(request, ["profiles"], customer_id)
        customer_id, live = _holder(request, ref_system, ref_id)
    response = json_response(privacy(request)(live), live["version"])
    response.headers["Content-Location"] = f"/v1/customers/{customer_id}"
    return response


def _holder(request: Request, ref_system: str, ref_id: str) -> tuple[UUID, dict[str, Any]]:
    """The customer answering for an external id (a merged holder's final survivor) and its
    live profile; raises :class:`CustomerRefNotFound` for nobody."""
    with deps.services(request).read_store.snapshot() as tx:
        found = find_by_external(tx, ref_system, ref_id)
        if found is None:
            raise CustomerRefNotFound(ref_system, ref_id)
        customer_id = UUID(found["customer_id"])
        if found["status"] == "merged":
            customer_id = final_survivor(tx, UUID(found["merged_into"]))
        return customer_id, live_profile(tx, customer_id)


@router.get("/customers/{customer_id}/loyalty", responses=s.CUSTOMER_READ)
def get_loyalty(customer_id: UUID, request: Request) -> Response:
    """Points and tier (ETag = version): the balance, the lots still holding points with their
    expiry, what was earned, redeemed, expired and taken back, and the tier with the rule,
    policy version and spend per currency that decided it (:mod:`projections.loyalty`: a fold
    of the customer's events, no wall clock). Erased or merged → 410."""
    store = deps.services(request).store
    store.customer(customer_id).require_live()
    view = loyalty_view(store.customer_events(customer_id))
    return json_response(view, view["version"])


@router.get("/customers", response_model=s.Page, responses=s.LIST_READ)
def list_customers(
    request: Request,
    q: Annotated[
        str | None, Query(max_length=200, description="prefix of name, email or phone")
    ] = None,
    tag: Annotated[
        str | None, Query(max_length=200, description="a tag (normalised like tags)")
    ] = None,
    stage: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    segment: Annotated[
        str | None, Query(max_length=64, description="members of this segment")
    ] = None,
    external_system: Annotated[
        str | None,
        Query(
            max_length=64,
            description="holders of an external id of this system",
            json_schema_extra={"pattern": SYSTEM_PATTERN},
        ),
    ] = None,
    external_id: Annotated[
        str | None,
        Query(max_length=200, description="with external_system: holders of this id"),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Search profiles; stable order, opaque ``next_cursor`` for the next page."""
    external = _external_filter(external_system, external_id)
    deps.wait_for_position(request, ["profiles", "segments"] if segment else ["profiles"])
    with deps.services(request).read_store.snapshot() as tx:
        try:
            items, next_cursor = search_profiles(
                tx,
                q=q,
                tag=normalise_tag(tag) if tag else None,
                stage=stage,
                status=status,
                external=external,
                cursor=cursor,
                limit=limit,
            )
        except ValueError:
            raise InvalidInput("cursor", "is not a cursor this API issued") from None
    shown = privacy(request)
    return json_response({"items": [shown(item) for item in items], "next_cursor": next_cursor})


def _external_filter(system: str | None, external_id: str | None) -> tuple[str, str | None] | None:
    """The ``external_system`` / ``external_id`` filter in canonical form."""
    if system is None:
        if external_id is not None:
            raise InvalidInput("external_system", "is required with external_id")
        return None
    canonical = normalise_system("external_system", system)
    if external_id is None:
        return canonical, None
    return canonical, normalise_external_id("external_id", external_id)
