"""Who a campaign is for: the members of a segment, or of an inline rule.

An audience is ``{"segment": "<segment id>"}`` or ``{"rule": <rule>}``, a rule in the segments'
language (:mod:`domain.segment_rules`, validated the same way, errors naming
``audience.rule.…``). Either way the launch freezes the members of one segment at one store
position: an inline rule is the rule of the segment :func:`segment_of` names
(``campaign-<campaign id>``, :func:`domain.segment.campaign_segment_id`), which the launcher
defines before it freezes the audience, so the segments read model decides it from the log and
keeps its history like any other segment's. Those ids are reserved: no user may define one
(:func:`domain.segment.check_user_segment_id`).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from domain.errors import InvalidInput
from domain.segment import SEGMENT_ID, campaign_segment_id
from domain.segment_rules import parse


class Audience(BaseModel):
    """The audience as given: a segment id or a rule (checked by :func:`canonical`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    segment: str | None = Field(default=None, pattern=SEGMENT_ID.pattern)
    rule: Any = None


def canonical(audience: Audience) -> dict[str, Any]:
    """``{"segment": id}`` or ``{"rule": <normal form>}``; :class:`InvalidInput` when both or
    neither are given, or naming the rule's offending part (``audience.rule.all[0].op``)."""
    if (audience.segment is None) == (audience.rule is None):
        raise InvalidInput("audience", "must have either a segment or a rule")
    if audience.segment is not None:
        return {"segment": audience.segment}
    return {"rule": parse(audience.rule, "audience.rule")}


def segment_of(campaign_id: UUID, audience: dict[str, Any]) -> str:
    """The id of the segment whose members at the launch position are the audience."""
    segment: str | None = audience.get("segment")
    return campaign_segment_id(campaign_id) if segment is None else segment
