"""The Segment and Refresh aggregates: validated definitions, idempotent changes and refreshes;
the campaign namespace of segment ids, defined by the launcher alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import pytest

from commands.segments import SegmentService
from commands.service import Context
from domain.campaign_audience import segment_of
from domain.errors import InvalidInput
from domain.event_base import Meta
from domain.segment import (
    Refresh,
    ReservedSegmentId,
    Segment,
    campaign_segment_id,
    check_user_segment_id,
)
from infra.store import EventStore

META = Meta("unit-test", "corr-1", None, datetime(2026, 5, 1, 12, tzinfo=UTC))
# a fixed id: parameters must be the same in every xdist worker
SOME_ID = UUID("6fb3ba86-f731-40d3-a265-f0e4e6d22c33")
VIP = {"field": "tags", "op": "contains", "value": "VIP"}


def test_a_definition_is_validated_and_normalised() -> None:
    segment = Segment.define("vips", "  VIP customers ", VIP, "email_marketing", META)
    assert (segment.segment_id, segment.name, segment.purpose) == (
        "vips",
        "VIP customers",
        "email_marketing",
    )
    assert segment.rule == {**VIP, "value": "vip"} and segment.version == 1
    assert segment.id == Segment.id_for("vips") != Segment.id_for("vip")
    (event,) = segment.collect_events()
    assert isinstance(event, Segment.Defined) and event.actor == "unit-test"


@pytest.mark.parametrize(
    ("segment_id", "name", "rule", "purpose", "field"),
    [
        ("Not An Id", "x", VIP, None, "segment_id"),
        ("ok", "   ", VIP, None, "name"),
        ("ok", "x", {"field": "tags", "op": "gte", "value": 1}, None, "rule.op"),
        ("ok", "x", VIP, "carrier_pigeon", "purpose"),
    ],
)
def test_invalid_definitions_name_the_field(
    segment_id: str, name: str, rule: dict[str, object], purpose: str | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        Segment.define(segment_id, name, rule, purpose, META)
    assert caught.value.field == field


def test_only_a_real_change_is_recorded() -> None:
    segment = Segment.define("vips", "VIP", VIP, None, META)
    assert not segment.redefine("VIP", {**VIP, "value": "vip"}, None, META)
    assert segment.redefine("VIP", VIP, "sms_marketing", META) and segment.version == 2
    assert [type(e) for e in segment.collect_events()] == [Segment.Defined, Segment.Redefined]
    with pytest.raises(InvalidInput):
        segment.redefine("VIP", {"not": "x"}, None, META)
    assert segment.version == 2


def test_a_refresh_is_one_event_per_instant_and_currency() -> None:
    later = Meta("unit-test", "corr-2", None, META.occurred_at + timedelta(hours=1))
    same_instant = Meta(
        "other", "corr-3", None, META.occurred_at.astimezone(timezone(timedelta(hours=2)))
    )
    first = Refresh.request(META)
    assert first.id == Refresh.request(same_instant).id  # same instant, other offset
    assert first.id != Refresh.request(later).id != Refresh.request(META, "usd").id
    assert first.currency == "EUR" and Refresh.request(META, "usd").currency == "USD"
    naive = Meta("unit-test", "corr-4", None, datetime(2026, 5, 1, 12))
    with pytest.raises(InvalidInput, match="time zone"):
        Refresh.request(naive)


@pytest.mark.parametrize("campaign_id", [SOME_ID, UUID(int=0), UUID("F" * 32)])
def test_the_campaign_namespace_is_the_launchers_alone(
    store: EventStore, ctx: Context, campaign_id: UUID
) -> None:
    reserved = campaign_segment_id(campaign_id)
    assert segment_of(campaign_id, {"rule": VIP}) == reserved == f"campaign-{campaign_id}"
    segments = SegmentService(store)
    with pytest.raises(ReservedSegmentId) as refused:
        segments.define(reserved, "Mine", VIP, None, ctx)
    assert isinstance(refused.value, InvalidInput) and refused.value.field == "segment_id"
    assert refused.value.code == "reserved-segment-id"
    assert store.head() == 0  # nothing recorded
    defined = segments.define_audience(campaign_id, VIP, ctx)
    assert (defined.segment_id, defined.version) == (reserved, 1)
    with pytest.raises(ReservedSegmentId):  # nor redefined by a user once it exists
        segments.define(reserved, "Mine", {"not": VIP}, None, ctx)
    assert segments.define_audience(campaign_id, VIP, ctx).version == 1  # unchanged: nothing


@pytest.mark.parametrize(
    "segment_id", ["campaign-responders", f"campaign-{SOME_ID.hex}", f"xcampaign-{SOME_ID}"]
)
def test_ids_only_like_the_campaign_namespace_stay_the_users(segment_id: str) -> None:
    assert check_user_segment_id(segment_id) == segment_id


def test_only_the_launcher_defines_campaign_audiences() -> None:
    root = Path(__file__).resolve().parents[2]
    callers = {
        str(path.relative_to(root))
        for package in ("api", "bootstrap", "consumers", "commands", "projections", "infra")
        for path in (root / package).rglob("*.py")
        if "define_audience" in path.read_text(encoding="utf-8")
    }
    assert callers == {"commands/segments.py", "consumers/campaign_launch.py"}
