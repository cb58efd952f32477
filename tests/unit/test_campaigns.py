"""Campaigns: the spec in canonical form with field-named errors, the lifecycle (edits refused
after the launch starts), deterministic assignment, and targeting a customer (consent, erased,
frequency cap across campaigns, snapshots from before campaigns)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from commands import messages as m
from commands.campaigns import (
    CampaignExists,
    CampaignNotFound,
    CampaignService,
    CampaignVersionConflict,
    TargetForCampaign,
)
from commands.service import CommandService, Context
from domain import segment_rules
from domain.campaign import (
    CONTROL,
    TREATMENT,
    Campaign,
    InvalidCampaignTransition,
    assign,
    parse_spec,
)
from domain.campaign_audience import segment_of
from domain.customer import Customer
from domain.errors import InvalidInput
from domain.event_base import Meta
from infra.store import EventStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC: dict[str, Any] = {
    "name": "Spring sale",
    "purpose": "email_marketing",
    "channel": "email",
    "audience": {"segment": "vips"},
}


def meta(at: datetime = T0) -> Meta:
    return Meta("marketer", "corr", None, at)


def test_the_spec_is_stored_in_canonical_form() -> None:
    spec = parse_spec({**SPEC, "cost": {"amount": "100.50", "currency": "eur"}})
    assert parse_spec({**SPEC, "control_fraction": "0.10"})["control_fraction"] == "0.1"
    assert parse_spec({**SPEC, "name": " Spring "})["name"] == "Spring"
    assert spec["control_fraction"] == "0.1" and spec["conversion"] == {
        "window_days": 30,
        "currency": "EUR",
        "min_amount": None,
        "category": None,
        "sku": None,
    }
    assert spec["cost"] == {"amount": "100.5", "currency": "EUR"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"purpose": "spam"}, "purpose"),
        ({"channel": "fax"}, "channel"),
        ({"audience": {"segment": "Not A Slug"}}, "audience.segment"),
        ({"audience": {}}, "audience"),
        (
            {
                "audience": {
                    "segment": "vips",
                    "rule": {"field": "tags", "op": "contains", "value": "a"},
                }
            },
            "audience",
        ),
        ({"audience": {"rule": []}}, "audience.rule"),
        ({"audience": {"rule": {}}}, "audience.rule.field"),
        (
            {"audience": {"rule": {"field": "shoe_size", "op": "eq", "value": 1}}},
            "audience.rule.field",
        ),
        (
            {"audience": {"rule": {"all": [{"field": "tags", "op": "gte", "value": "a"}]}}},
            "audience.rule.all[0].op",
        ),
        (
            {"audience": {"rule": {"field": "purchases.count", "op": "gte", "value": "many"}}},
            "audience.rule.value",
        ),
        ({"audience": {"rule": {"any": []}}}, "audience.rule.any"),
        ({"audience": {"surprise": 1}}, "audience.surprise"),
        ({"control_fraction": "0"}, "control_fraction"),
        ({"control_fraction": 0.1}, "control_fraction"),
        ({"conversion": {"window_days": "7"}}, "conversion.window_days"),
        ({"conversion": {"window_days": 0}}, "conversion.window_days"),
        ({"conversion": {"min_amount": "-1"}}, "conversion.min_amount"),
        ({"conversion": {"currency": "EURO"}}, "conversion.currency"),
        ({"cost": {"amount": "10", "currency": "USD"}}, "cost.currency"),
        ({"scheduled_at": "2026-01-01T00:00:00"}, "scheduled_at"),
        ({"name": ""}, "name"),
        ({"name": "  "}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"name": 7}, "name"),
        ({"content_ref": "two\nlines"}, "content_ref"),
        ({"conversion": {"category": "tea\u202e"}}, "conversion.category"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_spec_names_its_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_spec({**SPEC, **change})
    assert refused.value.field == field


def test_an_inline_rule_is_stored_in_the_segments_normal_form() -> None:
    rule = {"all": [{"field": "tags", "op": "contains", "value": " VIP "}]}
    spec = parse_spec({**SPEC, "audience": {"rule": rule}})
    assert spec["audience"] == {"rule": segment_rules.parse(rule)}
    assert parse_spec(SPEC)["audience"] == {"segment": "vips"}
    campaign = Campaign.create({**SPEC, "audience": {"rule": rule}}, meta())
    assert segment_of(campaign.id, campaign.spec["audience"]) == f"campaign-{campaign.id}"
    assert segment_of(campaign.id, {"segment": "vips"}) == "vips"


def test_lifecycle_and_edits_refused_after_the_launch_starts() -> None:
    campaign = Campaign.create(SPEC, meta())
    assert not campaign.update(SPEC, meta())
    assert campaign.update({**SPEC, "name": "Summer"}, meta())
    campaign.schedule(T0 + timedelta(days=1), meta())
    assert campaign.status == "scheduled" and campaign.spec["scheduled_at"].startswith("2026-01-02")
    assert campaign.start_launch(10, {"max_touches": 3, "window_days": 30}, meta())
    assert not campaign.start_launch(11, {"max_touches": 3, "window_days": 30}, meta())
    assert campaign.launch is not None and campaign.launch["position"] == 10
    for refused in (
        lambda: campaign.update({**SPEC, "name": "Late"}, meta()),
        lambda: campaign.cancel(None, meta()),
        lambda: campaign.complete(meta()),
    ):
        with pytest.raises(InvalidCampaignTransition):
            refused()
    campaign.finish_launch({"audience": 0}, meta())
    campaign.complete(meta())
    types = [e.TYPE for e in campaign.collect_events()]  # type: ignore[attr-defined]
    assert types == [
        "campaign.created",
        "campaign.updated",
        "campaign.scheduled",
        "campaign.launch_started",
        "campaign.launched",
        "campaign.completed",
    ]
    assert "assignment_key" not in campaign.view()


def test_assignment_is_deterministic_balanced_and_independent_between_campaigns() -> None:
    customers = [uuid4() for _ in range(20_000)]
    first, second = Campaign.create(SPEC, meta()), Campaign.create(SPEC, meta())
    groups = [first.group_of(c) for c in customers]
    assert groups == [first.group_of(c) for c in customers]
    share = Counter(groups)[CONTROL] / len(customers)
    assert 0.09 < share < 0.11  # 10 % control: 4.7 standard errors either side
    both = Counter((first.group_of(c), second.group_of(c)) for c in customers)
    # independent: the control share among the first's control is the overall share
    assert 0.07 < both[CONTROL, CONTROL] / Counter(groups)[CONTROL] < 0.13
    key = "00" * 32
    assert assign(key, UUID(int=1), UUID(int=2), "0.99") == assign(
        key, UUID(int=1), UUID(int=2), "0.99"
    )


def test_the_service_creates_lists_and_guards_versions(store: EventStore) -> None:
    service = CampaignService(store)
    ctx = Context(actor="marketer")
    a, _ = service.create(SPEC, ctx)
    b, position = service.create({**SPEC, "name": "B"}, ctx)
    assert position > 0
    assert [c.id for c in service.list()] == [b.id, a.id]
    with pytest.raises(CampaignVersionConflict):
        service.change(a.id, ctx, lambda c, mt: c.cancel(None, mt), expected_version=7)
    cancelled, _ = service.change(a.id, ctx, lambda c, mt: c.cancel("typo", mt))
    assert service.get(a.id).status == "cancelled" == cancelled.status
    with pytest.raises(CampaignNotFound):
        service.get(uuid4())


def test_a_create_with_an_existing_campaign_id_says_the_campaign_exists(
    store: EventStore,
) -> None:
    """At once, not retried into ConcurrentWrite; the first campaign is unchanged and the
    directory lists it once."""
    service = CampaignService(store)
    ctx = Context(actor="marketer")
    campaign_id = uuid4()
    first, _ = service.create(SPEC, ctx, campaign_id=campaign_id)
    head = store.head()
    with pytest.raises(CampaignExists) as refused:
        service.create({**SPEC, "name": "Other"}, ctx, campaign_id=campaign_id)
    assert refused.value.to_dict() == {
        "code": "campaign-exists",
        "message": f"campaign {campaign_id} exists",
        "campaign_id": str(campaign_id),
    }
    assert store.head() == head
    assert service.get(campaign_id).spec["name"] == "Spring sale" == first.spec["name"]
    assert [c.id for c in service.list()] == [campaign_id]


def _target(customer: UUID, campaign: str, group: str = TREATMENT, **kw: Any) -> m.Command:
    fields: dict[str, Any] = {
        "purpose": "email_marketing",
        "channel": "email",
        "max_touches": 2,
        "window_days": 30,
    }
    return TargetForCampaign(customer_id=customer, campaign_id=campaign, group=group, **fields | kw)


def test_targeting_refuses_no_consent_erased_and_over_the_cap(
    service: CommandService, ctx: Context
) -> None:
    def register(consent: bool) -> UUID:
        cid = service.execute(m.RegisterCustomer(name="A"), ctx).customer_id
        assert cid is not None
        if consent:
            service.execute(
                m.SetConsent(customer_id=cid, purpose="email_marketing", granted=True), ctx
            )
        return cid

    willing, unwilling, erased = register(True), register(False), register(True)
    service.execute(m.EraseCustomer(customer_id=erased), ctx)
    outcomes = service.execute_batch([_target(c, "c1") for c in (willing, unwilling, erased)], ctx)
    assert [o.problem.code if o.problem else o.status for o in outcomes] == [
        "accepted",
        "no-consent",
        "gone-erased",
    ]
    again = service.execute(_target(willing, "c1"), ctx)  # already in: nothing new
    assert again.events == ()
    service.execute(_target(willing, "c2", CONTROL), ctx)  # control: no touch
    service.execute(_target(willing, "c3"), ctx)
    capped = service.execute_batch([_target(willing, "c4")], ctx)[0]
    assert capped.problem is not None and capped.problem.code == "frequency-capped"
    customer = service.store.customer(willing)
    assert set(customer.campaigns) == {"c1", "c2", "c3"}
    outside = service.execute(_target(willing, "c4", window_days=0), ctx)
    assert outside.status == "accepted"  # touches before the window do not count


def test_a_snapshot_from_before_campaigns_is_upcast() -> None:
    state: dict[str, Any] = {"refunded": {}}
    Customer.upcast_v3_v4(state)
    assert state["campaigns"] == {}


def test_outcomes_withdraw_consent_invalidate_the_channel_and_are_checked(
    service: CommandService, ctx: Context
) -> None:
    cid = service.execute(m.RegisterCustomer(name="A"), ctx).customer_id
    assert cid is not None
    service.execute(m.SetConsent(customer_id=cid, purpose="email_marketing", granted=True), ctx)
    service.execute(_target(cid, "c1"), ctx)
    service.execute(_target(cid, "c2", CONTROL), ctx)

    def report(**fields: Any) -> str:
        try:
            command = m.parse_command(
                {"type": "campaign_outcome", "customer_id": str(cid), **fields}
            )
        except InvalidInput as error:  # refused while parsing, as the batch route does
            return error.field
        outcome = service.execute_batch([command], ctx)[0]
        return outcome.problem.to_dict().get("field", "") if outcome.problem else "accepted"

    assert report(campaign_id="c1", outcome="sent") == "outcome"
    assert report(campaign_id="c1", outcome="opened", hard=True) == "hard"
    assert report(campaign_id="c1", outcome="opened", hard="yes") == "hard"
    assert report(campaign_id="c2", outcome="opened") == "campaign_id"  # control: sent nothing
    assert report(campaign_id="c9", outcome="opened") == "campaign_id"
    assert report(campaign_id="c1", outcome="bounced", hard=True) == "accepted"
    assert report(campaign_id="c1", outcome="unsubscribed") == "accepted"
    customer = service.store.customer(cid)
    assert customer.invalid_channels == ["email"] and customer.consents["email_marketing"] is False
    service.execute(m.SetConsent(customer_id=cid, purpose="email_marketing", granted=True), ctx)
    refused = service.execute_batch([_target(cid, "c3")], ctx)[0]
    assert refused.problem is not None and refused.problem.code == "channel-invalid"
