"""Policy routes (admin): read a policy version, record a new one (docs/adr/0008)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.http import deps
from api.http.auth import require
from api.http.preconditions import IfMatch, NoCurrentVersion, PreconditionFailed, if_match_header
from api.http.responses import json_response
from api.http.schemas import AUTH, BODY, problems
from commands.messages import Moment
from commands.policies import PolicyNotFound, PolicyVersionConflict
from domain.policy import KINDS
from infra.api_keys import Role

router = APIRouter(prefix="/v1", tags=["policies"], dependencies=[require(Role.ADMIN)])
PolicyName = Annotated[str, Path(max_length=64, examples=["lifecycle"])]


class PolicyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "document": {
                        "active": {"window_days": 90, "min_purchases": 2},
                        "loyal": {"window_days": 365, "min_purchases": 5, "min_spend": "500.00"},
                        "at_risk": {"gap_multiple": 3, "min_days": 30, "max_days": 180},
                        "churned": {"gap_multiple": 6, "min_days": 90, "max_days": 365},
                    },
                    "effective_at": "2026-01-01T00:00:00Z",
                }
            ]
        },
    )
    document: dict[str, Any] = Field(description="The policy document (README, Policies)")
    effective_at: Moment | None = Field(
        default=None,
        description="Business time the version applies from (default: now); never before the "
        "current version's",
    )


def _known(name: str) -> str:
    if name not in KINDS:
        raise PolicyNotFound(f"no policy {name!r}; policies are {sorted(KINDS)}", policy=name)
    return name


@router.get("/policies/{name}", responses=problems(*AUTH, 404, 422))
def get_policy(
    name: PolicyName,
    request: Request,
    version: Annotated[int | None, Query(ge=1, description="an older version")] = None,
) -> Response:
    """A policy version (default: the newest): its document, who recorded it, from when it
    applies; the ``ETag`` is the newest version (send it back as ``If-Match``)."""
    policies = deps.services(request).policies
    found = policies.version(_known(name), version)
    return json_response(found.view(), policies.version(name).version)


@router.put("/policies/{name}", responses=problems(*AUTH, *BODY, 404, 409, 412, 428))
def put_policy(
    name: PolicyName, body: PolicyRequest, request: Request, if_match: IfMatch = None
) -> Response:
    """Record the next version of a policy (an event in the store). Changing a defined policy
    needs ``If-Match`` with its current version (428 without, 412 on another); the first
    version needs none. An invalid document is a 422 whose ``field`` names the culprit
    (``document.at_risk.min_days``); an unchanged document records nothing."""
    svc = deps.services(request)
    existing = svc.policies.get(_known(name))
    current = None if existing is None else existing.version
    header = if_match_header(if_match, required=existing is not None)
    expected = 0
    if header is not None:
        if not header.matches(current):
            named = "*" if header.any else ", ".join(f'"{v}"' for v in sorted(header.versions))
            problem = NoCurrentVersion(f"If-Match names {named or 'no strong entity tag'}")
            raise PreconditionFailed(412, problem)
        expected = current or 0
    try:
        recorded = svc.policies.define(
            name,
            body.document,
            deps.context(request, deps.actor(request)),
            effective_at=body.effective_at,
            expected_version=expected,
        )
    except PolicyVersionConflict as error:  # changed between our look and our write
        raise PreconditionFailed(412, error) from None
    return json_response(recorded.view(), recorded.version.version)
