"""Campaigns over HTTP (embedded mode): define, edit under If-Match, schedule, cancel, launch on
a segment (consent, erasure and the frequency cap decide who is in), results, audience."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from commands.service import Context
from consumers.campaign_launch import LaunchProgress
from domain.event_base import Meta
from domain.segment import Segment
from tests.api_support import Api, running_api

SPEC: dict[str, Any] = {
    "name": "Spring sale",
    "purpose": "email_marketing",
    "channel": "email",
    "audience": {"segment": "vips"},
    "control_fraction": "0.5",
    "conversion": {"window_days": 14},
    "cost": {"amount": "10", "currency": "EUR"},
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path, campaign_max_touches=1) as running:
        yield running


def customer(api: Api, *, consent: bool, vip: bool = True) -> str:
    writer = api.headers("writer")
    cid = api.client.post("/v1/customers", json={"name": "C"}, headers=writer).json()["customer_id"]
    if vip:
        api.client.put(f"/v1/customers/{cid}/tags/vip", headers=writer)
    if consent:
        api.client.put(
            f"/v1/customers/{cid}/consents/email_marketing", json={"granted": True}, headers=writer
        )
    return str(cid)


def create(api: Api, **changes: Any) -> dict[str, Any]:
    made = api.client.post(
        "/v1/campaigns", json={**SPEC, **changes}, headers=api.headers("marketer")
    )
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


def test_define_edit_schedule_cancel(api: Api) -> None:
    marketer = api.headers("marketer")
    made = create(api)
    cid = made["campaign_id"]
    assert made["status"] == "draft" and made["conversion"]["currency"] == "EUR"
    bad = api.client.post(
        "/v1/campaigns", json={**SPEC, "conversion": {"window_days": "7"}}, headers=marketer
    )
    assert bad.status_code == 422 and bad.json()["field"] == "conversion.window_days"
    unconditional = api.client.patch(f"/v1/campaigns/{cid}", json={"name": "X"}, headers=marketer)
    assert unconditional.status_code == 428
    stale = api.client.patch(
        f"/v1/campaigns/{cid}", json={"name": "X"}, headers={**marketer, "If-Match": '"7"'}
    )
    assert stale.status_code == 412
    edited = api.client.patch(
        f"/v1/campaigns/{cid}", json={"name": "X"}, headers={**marketer, "If-Match": '"1"'}
    )
    assert edited.status_code == 200 and edited.json()["name"] == "X"
    assert edited.headers["etag"] == '"2"'
    scheduled = api.client.post(
        f"/v1/campaigns/{cid}/schedule", json={"at": "2030-01-01T09:00:00+01:00"}, headers=marketer
    )
    assert scheduled.json()["status"] == "scheduled"
    assert scheduled.json()["scheduled_at"] == "2030-01-01T08:00:00.000000+00:00"
    cancelled = api.client.post(f"/v1/campaigns/{cid}/cancel", json={}, headers=marketer)
    assert cancelled.json()["status"] == "cancelled"
    again = api.client.post(f"/v1/campaigns/{cid}/cancel", json={}, headers=marketer)
    assert again.status_code == 409 and again.json()["type"] == "/problems/invalid-transition"
    listed = api.client.get("/v1/campaigns", headers=api.headers("reader")).json()["items"]
    assert [c["campaign_id"] for c in listed] == [cid]
    missing = api.client.get("/v1/campaigns/00000000-0000-4000-8000-000000000000", headers=marketer)
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/not-found"


def test_launch_targets_the_eligible_and_results_count_them(api: Api) -> None:
    admin, marketer = api.headers("admin"), api.headers("marketer")
    willing = [customer(api, consent=True) for _ in range(12)]
    unwilling = customer(api, consent=False)
    outsider = customer(api, consent=True, vip=False)
    erased = customer(api, consent=True)
    api.client.delete(f"/v1/customers/{erased}", headers=admin)
    rule = {"field": "tags", "op": "contains", "value": "vip"}
    assert api.client.put(
        "/v1/segments/vips", json={"name": "VIPs", "rule": rule}, headers=admin
    ).is_success
    unknown = create(api, audience={"segment": "nobody"})
    refused = api.client.post(f"/v1/campaigns/{unknown['campaign_id']}/launch", headers=marketer)
    assert refused.status_code == 422 and refused.json()["field"] == "audience.segment"

    first = create(api)["campaign_id"]
    launched = api.client.post(f"/v1/campaigns/{first}/launch", headers=marketer)
    counts = launched.json()
    # the position reached: the launch's last event, after the audience was frozen
    assert counts["position"] == api.app.state.services.store.head() > counts["launch_position"]
    assert launched.headers["etag"] == f'"{counts["version"]}"'
    documented = api.client.get("/openapi.json").json()["components"]["schemas"]["LaunchResult"]
    assert set(counts) == set(documented["properties"]) == set(documented["required"])
    assert counts["audience"] == 13  # the erased customer left the segment
    assert counts["treatment"] + counts["control"] == 12
    assert counts["excluded"] == {"no-consent": 1}
    again = api.client.post(f"/v1/campaigns/{first}/launch", headers=marketer).json()
    assert again == counts  # launched: the recorded counts
    edit = api.client.patch(
        f"/v1/campaigns/{first}", json={"name": "Late"}, headers={**marketer, "If-Match": '"3"'}
    )
    assert edit.status_code == 409

    # the cap is one treatment touch: the first campaign's treatment members are out now
    second = create(api)["campaign_id"]
    later = api.client.post(f"/v1/campaigns/{second}/launch", headers=marketer).json()
    assert later["excluded"].get("frequency-capped") == counts["treatment"]

    reader = api.headers("reader", **{"X-Min-Position": str(later["position"])})
    results = api.client.get(f"/v1/campaigns/{first}/results", headers=reader).json()
    groups = results["groups"]
    assert groups["treatment"]["size"] == counts["treatment"]
    assert groups["control"]["size"] == counts["control"]
    assert results["uplift"]["conversion"]["absolute"] == 0.0
    members = api.client.get(
        f"/v1/campaigns/{first}/audience?group=treatment&limit=5",
        headers=api.headers("marketer", **{"X-Min-Position": str(counts["position"])}),
    ).json()
    assert all(m["customer_id"] in willing for m in members["items"])
    assert unwilling not in {m["customer_id"] for m in members["items"]}
    assert outsider not in {m["customer_id"] for m in members["items"]}


def test_an_erased_member_leaves_the_audience_and_keeps_counting(api: Api) -> None:
    admin, marketer, writer = api.headers("admin"), api.headers("marketer"), api.headers("writer")
    members = [customer(api, consent=True) for _ in range(8)]
    rule = {"field": "tags", "op": "contains", "value": "vip"}
    api.client.put("/v1/segments/vips", json={"name": "VIPs", "rule": rule}, headers=admin)
    campaign = create(api, control_fraction="0.2")["campaign_id"]
    reached = api.client.post(f"/v1/campaigns/{campaign}/launch", headers=marketer).json()
    launched = api.headers("marketer", **{"X-Min-Position": str(reached["position"])})
    page = api.client.get(f"/v1/campaigns/{campaign}/audience", headers=launched).json()["items"]
    buyer = page[0]["customer_id"]
    bought = api.client.post(
        f"/v1/customers/{buyer}/purchases",
        json={"order_id": "1", "amount": "30", "currency": "EUR"},
        headers=writer,
    ).json()["position"]
    reader = api.headers("reader", **{"X-Min-Position": str(bought)})
    before = api.client.get(f"/v1/campaigns/{campaign}/results", headers=reader).json()
    assert before["groups"]["treatment"]["conversions"] == 1
    erased = api.client.delete(f"/v1/customers/{buyer}", headers=admin).json()["position"]
    after_erasure = api.headers("reader", **{"X-Min-Position": str(erased)})
    after = api.client.get(f"/v1/campaigns/{campaign}/results", headers=after_erasure).json()
    assert after["groups"] == before["groups"] and after["uplift"] == before["uplift"]
    audience = api.client.get(
        f"/v1/campaigns/{campaign}/audience?group=treatment",
        headers=api.headers("marketer", **{"X-Min-Position": str(erased)}),
    ).json()["items"]
    assert buyer not in {m["customer_id"] for m in audience}
    assert len(audience) == len(page) - 1 and set(members) >= {m["customer_id"] for m in audience}


def test_an_inline_rule_audience_launches_like_a_segment(api: Api) -> None:
    marketer = api.headers("marketer")
    vips = {customer(api, consent=True) for _ in range(6)}
    unwilling = customer(api, consent=False)
    others = {customer(api, consent=True, vip=False) for _ in range(3)}
    for rule, field in [
        ({"field": "shoe_size", "op": "eq", "value": 1}, "audience.rule.field"),
        ({"all": [{"field": "tags", "op": "gte", "value": "vip"}]}, "audience.rule.all[0].op"),
        ([], "audience.rule"),
    ]:
        bad = api.client.post(
            "/v1/campaigns", json={**SPEC, "audience": {"rule": rule}}, headers=marketer
        )
        assert bad.status_code == 422 and bad.json()["field"] == field, bad.text
    both = {"segment": "vips", "rule": {"field": "tags", "op": "contains", "value": "vip"}}
    bad = api.client.post("/v1/campaigns", json={**SPEC, "audience": both}, headers=marketer)
    assert bad.status_code == 422 and bad.json()["field"] == "audience"

    rule = {"field": "tags", "op": "contains", "value": " VIP "}
    made = create(api, audience={"rule": rule})
    assert made["audience"] == {"rule": {"field": "tags", "op": "contains", "value": "vip"}}
    campaign = made["campaign_id"]
    counts = api.client.post(f"/v1/campaigns/{campaign}/launch", headers=marketer).json()
    assert counts["audience"] == 7 and counts["excluded"] == {"no-consent": 1}
    again = api.client.post(f"/v1/campaigns/{campaign}/launch", headers=marketer).json()
    assert again == counts
    members: set[str] = set()
    for group in ("treatment", "control"):
        page = api.client.get(
            f"/v1/campaigns/{campaign}/audience?group={group}&limit=100",
            headers=api.headers("marketer", **{"X-Min-Position": str(counts["position"])}),
        ).json()
        members |= {m["customer_id"] for m in page["items"]}
    assert members == vips and unwilling not in members and not members & others
    segments = api.client.get("/v1/segments", headers=api.headers("reader")).json()["items"]
    inline = [s for s in segments if s["segment_id"] == f"campaign-{campaign}"]
    assert [s["rule"] for s in inline] == [made["audience"]["rule"]]  # its history is kept


class Stop(Exception):
    """Stops a launch after its first batch, as a crash would."""


def stop(progress: LaunchProgress) -> None:
    raise Stop(progress.done)


def started_inline_launch(api: Api) -> tuple[str, set[str], dict[str, Any]]:
    """An inline-rule campaign (vips) whose launch stopped after its first batch of two; the
    vips and the rule."""
    vips = {customer(api, consent=True) for _ in range(6)}
    customer(api, consent=True, vip=False)
    rule = {"field": "tags", "op": "contains", "value": "vip"}
    campaign = create(api, audience={"rule": rule})["campaign_id"]
    launcher = api.app.state.services.launcher
    launcher.batch_size = 2
    with pytest.raises(Stop):
        launcher.launch(UUID(campaign), Context(actor="test"), stop)
    return campaign, vips, rule


def test_users_are_refused_the_campaign_segment_namespace(api: Api) -> None:
    admin, marketer = api.headers("admin"), api.headers("marketer")
    campaign, vips, rule = started_inline_launch(api)
    everyone = {"name": "Everyone", "rule": {"not": rule | {"value": "nobody"}}}
    for segment_id in (f"campaign-{campaign}", f"campaign-{uuid4()}"):  # launched or not
        for method in ("PUT", "POST"):
            refused = api.client.request(
                method, f"/v1/segments/{segment_id}", json=everyone, headers=admin
            )
            assert refused.status_code == 422, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            problem = refused.json()
            assert problem["type"] == "/problems/reserved-segment-id"
            assert problem["field"] == "segment_id" and "reserved" in problem["detail"]
    alike = api.client.put("/v1/segments/campaign-responders", json=everyone, headers=admin)
    assert alike.status_code == 200, alike.text  # only campaign-<uuid> is reserved

    resumed = api.client.post(f"/v1/campaigns/{campaign}/launch", headers=marketer).json()
    assert resumed["audience"] == len(vips) == resumed["treatment"] + resumed["control"]
    reader = api.headers("reader", **{"X-Min-Position": str(resumed["position"])})
    segments = api.client.get("/v1/segments", headers=reader).json()["items"]
    (inline,) = [s for s in segments if s["segment_id"] == f"campaign-{campaign}"]
    assert inline["rule"] == rule and inline["version"] == 1


def test_a_resumed_launch_never_redefines_its_audience(api: Api) -> None:
    services = api.app.state.services
    campaign, vips, rule = started_inline_launch(api)
    launch = api.client.get(f"/v1/campaigns/{campaign}", headers=api.headers("marketer"))
    frozen_at = launch.json()["launch"]["position"]
    # the definition changes after the launch position (no user surface can any more)
    segment = services.store.repository.get(Segment.id_for(f"campaign-{campaign}"))
    segment.redefine(segment.name, {"not": rule}, None, Meta("t", "c", None, datetime.now(UTC)))
    (changed,) = services.store.save(segment)
    assert changed.notification.id > frozen_at

    resumed = api.client.post(
        f"/v1/campaigns/{campaign}/launch", headers=api.headers("marketer")
    ).json()
    segment = services.store.repository.get(Segment.id_for(f"campaign-{campaign}"))
    assert segment.version == 2 and segment.rule == {"not": rule}  # the resume defined nothing
    assert resumed["audience"] == len(vips)  # the members at the frozen position
    assert resumed["launch_position"] == frozen_at


def test_an_audience_edited_as_the_launch_starts_is_not_launched(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    services, marketer = api.app.state.services, api.headers("marketer")
    customer(api, consent=True)
    campaign = create(api, audience={"rule": {"field": "tags", "op": "contains", "value": "vip"}})
    other = {"rule": {"field": "tags", "op": "contains", "value": "gold"}}
    head, edits = services.store.head, [UUID(campaign["campaign_id"])]

    def edited_meanwhile() -> int:  # the launcher takes the head after defining the audience
        for campaign_id in edits:
            services.campaigns.change(
                campaign_id,
                Context(actor="t"),
                lambda c, meta: c.update({**c.spec, "audience": other}, meta),
            )
        edits.clear()
        position: int = head()
        return position

    monkeypatch.setattr(services.store, "head", edited_meanwhile)
    refused = api.client.post(f"/v1/campaigns/{campaign['campaign_id']}/launch", headers=marketer)
    assert refused.status_code == 409 and refused.json()["type"] == "/problems/concurrent-write"
    assert services.campaigns.get(UUID(campaign["campaign_id"])).status == "draft"
    again = api.client.post(f"/v1/campaigns/{campaign['campaign_id']}/launch", headers=marketer)
    assert again.status_code == 200 and again.json()["audience"] == 0  # the rule as edited


def test_a_cancelled_campaign_defines_no_audience(api: Api) -> None:
    marketer = api.headers("marketer")
    campaign = create(api, audience={"rule": {"field": "tags", "op": "contains", "value": "vip"}})
    cid = campaign["campaign_id"]
    api.client.post(f"/v1/campaigns/{cid}/cancel", json={}, headers=marketer)
    refused = api.client.post(f"/v1/campaigns/{cid}/launch", headers=marketer)
    assert refused.status_code == 409 and refused.json()["type"] == "/problems/invalid-transition"
    assert api.app.state.services.store.position_of(Segment.id_for(f"campaign-{cid}"), 1) is None
