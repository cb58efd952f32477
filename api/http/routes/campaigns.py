"""Campaign routes (issue 19): define, schedule, cancel, launch and complete campaigns (role
``marketer``); read them and their results (``marketer`` or ``reader``); page the audience
(``marketer``). See README, "Run a campaign"."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.http import deps
from api.http.auth import require
from api.http.preconditions import IfMatch, NoCurrentVersion, PreconditionFailed, if_match_header
from api.http.responses import json_response
from api.http.schemas import AUTH, BODY, EXAMPLE_ID, problems
from commands.campaigns import CampaignVersionConflict
from commands.messages import Moment
from domain.campaign import CONTROL, TREATMENT, Campaign
from domain.errors import InvalidInput
from domain.event_base import Meta
from domain.values import check_aware
from infra.api_keys import Role
from projections import campaign_results, campaigns
from projections.profiles import decode_cursor, encode_cursor

router = APIRouter(prefix="/v1", tags=["campaigns"])
WRITE = [require(Role.MARKETER)]
READ = [require(Role.MARKETER, Role.READER)]
EXAMPLE = {
    "name": "Spring sale",
    "purpose": "email_marketing",
    "channel": "email",
    "audience": {"segment": "vip-recent"},
    "content_ref": "cms:spring-2026",
    "control_fraction": "0.1",
    "conversion": {"window_days": 14, "currency": "EUR", "min_amount": "20"},
    "cost": {"amount": "1500", "currency": "EUR"},
}
Spec = Annotated[dict[str, Any], Body(examples=[EXAMPLE])]


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: Moment = Field(description="When the campaign is to be launched")


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=500)


def _written(campaign: Any, position: int, status: int = 200) -> Response:
    response = json_response({**campaign.view(), "position": position}, campaign.version)
    response.status_code = status
    return response


def _change(
    request: Request, campaign_id: UUID, decide: Callable[[Campaign, Meta], object]
) -> Response:
    """Apply ``decide(campaign, meta)`` to the campaign as the caller; the written view."""
    campaign, position = deps.services(request).campaigns.change(
        campaign_id, deps.context(request, deps.actor(request)), decide
    )
    return _written(campaign, position)


@router.post("/campaigns", dependencies=WRITE, responses=problems(*AUTH, *BODY), status_code=201)
def create_campaign(body: Spec, request: Request) -> Response:
    """A draft campaign (README, "Run a campaign", for the fields); 422 names the field."""
    svc = deps.services(request)
    campaign, position = svc.campaigns.create(body, deps.context(request, deps.actor(request)))
    return _written(campaign, position, 201)


@router.get("/campaigns", dependencies=READ, responses=problems(*AUTH, 422))
def list_campaigns(request: Request) -> Response:
    """Every campaign, newest first."""
    items = [c.view() for c in deps.services(request).campaigns.list()]
    return json_response({"items": items, "next_cursor": None})


@router.get("/campaigns/{campaign_id}", dependencies=READ, responses=problems(*AUTH, 404, 422))
def get_campaign(campaign_id: UUID, request: Request) -> Response:
    """One campaign: its spec, status, launch position and counts; ``ETag``: its version."""
    campaign = deps.services(request).campaigns.get(campaign_id)
    return json_response(campaign.view(), campaign.version)


@router.patch(
    "/campaigns/{campaign_id}",
    dependencies=WRITE,
    responses=problems(*AUTH, *BODY, 404, 409, 412, 428),
)
def update_campaign(
    campaign_id: UUID, body: Spec, request: Request, if_match: IfMatch = None
) -> Response:
    """Change fields of the spec (the others are kept) before the launch (409 after);
    ``If-Match`` with the current version is required."""
    svc = deps.services(request)
    current = svc.campaigns.get(campaign_id)
    header = if_match_header(if_match, required=True)
    assert header is not None
    if not header.matches(current.version):
        raise PreconditionFailed(
            412, NoCurrentVersion("If-Match does not name the current version")
        )
    try:
        campaign, position = svc.campaigns.change(
            campaign_id,
            deps.context(request, deps.actor(request)),
            lambda c, meta: c.update({**c.spec, **body}, meta),
            expected_version=current.version,
        )
    except CampaignVersionConflict as error:
        raise PreconditionFailed(412, error) from None
    return _written(campaign, position)


@router.post(
    "/campaigns/{campaign_id}/schedule",
    dependencies=WRITE,
    responses=problems(*AUTH, *BODY, 404, 409),
)
def schedule_campaign(campaign_id: UUID, body: ScheduleRequest, request: Request) -> Response:
    """Schedule a draft (or re-schedule a scheduled) campaign."""
    return _change(request, campaign_id, lambda c, meta: c.schedule(body.at, meta))


@router.post(
    "/campaigns/{campaign_id}/cancel",
    dependencies=WRITE,
    responses=problems(*AUTH, *BODY, 404, 409),
)
def cancel_campaign(campaign_id: UUID, body: CancelRequest, request: Request) -> Response:
    """Cancel a campaign that has not started its launch (409 after)."""
    return _change(request, campaign_id, lambda c, meta: c.cancel(body.reason, meta))


class LaunchResult(BaseModel):
    """What a launch answers: the counts, and the store ``position`` it reached."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "campaign_id": EXAMPLE_ID,
                    "position": 1042,
                    "version": 3,
                    "launch_position": 980,
                    "audience": 120,
                    TREATMENT: 98,
                    CONTROL: 11,
                    "excluded": {"no-consent": 9, "frequency-capped": 2},
                }
            ]
        }
    )
    campaign_id: str
    position: int = Field(
        description="Store position of the launch's last event: send it as X-Min-Position "
        "to read the launch's writes (results, audience, histories)"
    )
    version: int = Field(description="The campaign's version (also the ETag)")
    launch_position: int = Field(description="The store position the audience was frozen at")
    audience: int = Field(description="Members of the segment at launch_position")
    treatment: int
    control: int
    excluded: dict[str, int] = Field(description="Members left out, by reason")


@router.post(
    "/campaigns/{campaign_id}/launch",
    dependencies=WRITE,
    response_model=LaunchResult,
    responses=problems(*AUTH, 404, 409, 422, 503),
)
def launch_campaign(campaign_id: UUID, request: Request) -> Response:
    """Launch now (or resume a launch that stopped): freeze the audience, target every member
    (README, "Run a campaign"); answers the counts and the store ``position`` reached (read
    your writes with ``X-Min-Position``), ``ETag``: the campaign's version. Large audiences:
    ``clientele campaigns launch`` shows progress."""
    svc = deps.services(request)
    answer = svc.launcher.launch(campaign_id, deps.context(request, deps.actor(request)))
    return json_response({"campaign_id": str(campaign_id), **answer}, answer["version"])


@router.post(
    "/campaigns/{campaign_id}/complete",
    dependencies=WRITE,
    responses=problems(*AUTH, 404, 409, 422),
)
def complete_campaign(campaign_id: UUID, request: Request) -> Response:
    """Mark a launched campaign completed (its results go on being computed as asked)."""
    return _change(request, campaign_id, lambda c, meta: c.complete(meta))


@router.get(
    "/campaigns/{campaign_id}/results",
    dependencies=READ,
    responses=problems(*AUTH, 404, 422, 503),
)
def campaign_results_route(
    campaign_id: UUID,
    request: Request,
    as_of: Annotated[Moment | None, Query(description="business time (RFC 3339)")] = None,
) -> Response:
    """Group sizes, conversion and revenue per group, uplift with 95 % intervals and p-values,
    incremental conversions and revenue, ROI, breakdowns (README, "Campaign results")."""
    svc = deps.services(request)
    campaign = svc.campaigns.get(campaign_id)
    deps.wait_for_position(request, ["campaigns"])
    when: datetime | None = None if as_of is None else check_aware("as_of", as_of)
    with svc.read_store.snapshot() as tx:
        document = campaign_results.report(tx, campaign.view(), when)
    return json_response(document)


@router.get(
    "/campaigns/{campaign_id}/audience",
    dependencies=WRITE,
    responses=problems(*AUTH, 404, 422, 503),
)
def campaign_audience(
    campaign_id: UUID,
    request: Request,
    group: Annotated[str | None, Query(pattern=f"^({TREATMENT}|{CONTROL})$")] = TREATMENT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Live members (erased and merged customers left out) ``{customer_id, group}`` by
    customer id."""
    svc = deps.services(request)
    svc.campaigns.get(campaign_id)
    deps.wait_for_position(request, ["campaigns"])
    try:
        after = decode_cursor(cursor)[0] if cursor else ""
    except (ValueError, IndexError):
        raise InvalidInput("cursor", "is not a cursor this API gave") from None
    with svc.read_store.snapshot() as tx:
        rows = campaigns.audience(
            tx, str(campaign_id), group=group, after=str(after), limit=limit + 1
        )
    items = [{"customer_id": c, "group": g} for c, g in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None
    return json_response({"items": items, "next_cursor": next_cursor})
