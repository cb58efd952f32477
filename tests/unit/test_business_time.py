"""Business time: every command, registration included, may carry ``occurred_at``; it is
validated (not ahead of the store's clock beyond the skew, not before the floor, not before
the customer's registration) and recorded on every event the command makes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from commands import messages as m
from commands.campaigns import TargetForCampaign
from commands.service import CommandService, Context
from domain import errors
from domain.events import CustomerEvent
from infra.store import EventStore

REGISTERED = datetime(1997, 1, 1, tzinfo=UTC)
LATER = datetime(1997, 6, 1, 12, tzinfo=UTC)
Build = Callable[[UUID, UUID, datetime | None], m.Command]

COMMANDS: dict[str, tuple[list[Build], Build]] = {  # kind -> (set-up commands, the command)
    "update": (
        [],
        lambda c, _, t: m.UpdateProfile(customer_id=c, changes={"name": "B"}, occurred_at=t),
    ),
    "contact": (
        [],
        lambda c, _, t: m.RecordContact(
            customer_id=c, channel="email", direction="inbound", occurred_at=t
        ),
    ),
    "tag": ([], lambda c, _, t: m.TagCustomer(customer_id=c, tag="vip", occurred_at=t)),
    "untag": (
        [lambda c, _, t: m.TagCustomer(customer_id=c, tag="vip", occurred_at=t)],
        lambda c, _, t: m.UntagCustomer(customer_id=c, tag="vip", occurred_at=t),
    ),
    "purchase": (
        [],
        lambda c, _, t: m.RecordPurchase(
            customer_id=c, order_id="o1", amount="5", currency="EUR", occurred_at=t
        ),
    ),
    "refund": (
        [
            lambda c, _, t: m.RecordPurchase(
                customer_id=c, order_id="o1", amount="5", currency="EUR", occurred_at=t
            )
        ],
        lambda c, _, t: m.RefundPurchase(customer_id=c, order_id="o1", occurred_at=t),
    ),
    "feedback": ([], lambda c, _, t: m.RecordFeedback(customer_id=c, nps=9, occurred_at=t)),
    "consent": (
        [],
        lambda c, _, t: m.SetConsent(
            customer_id=c, purpose="profiling", granted=True, occurred_at=t
        ),
    ),
    "lifecycle": (
        [],
        lambda c, _, t: m.ChangeLifecycleStage(customer_id=c, stage="loyal", occurred_at=t),
    ),
    "churn": ([], lambda c, _, t: m.ChurnCustomer(customer_id=c, occurred_at=t)),
    "reactivate": (
        [lambda c, _, t: m.ChurnCustomer(customer_id=c, occurred_at=t)],
        lambda c, _, t: m.ReactivateCustomer(customer_id=c, occurred_at=t),
    ),
    "merge": ([], lambda c, d, t: m.MergeCustomers(customer_id=c, duplicate_id=d, occurred_at=t)),
    "unmerge": (
        [lambda c, d, t: m.MergeCustomers(customer_id=c, duplicate_id=d, occurred_at=t)],
        lambda c, d, t: m.UnmergeCustomers(customer_id=c, duplicate_id=d, occurred_at=t),
    ),
    "erase": ([], lambda c, _, t: m.EraseCustomer(customer_id=c, occurred_at=t)),
    "earn_points": ([], lambda c, _, t: m.EarnPoints(customer_id=c, points=5, occurred_at=t)),
    "redeem_points": (
        [lambda c, _, t: m.EarnPoints(customer_id=c, points=5, occurred_at=t)],
        lambda c, _, t: m.RedeemPoints(customer_id=c, points=5, occurred_at=t),
    ),
    "expire_points": (
        [lambda c, _, t: m.EarnPoints(customer_id=c, points=5, occurred_at=t)],
        lambda c, _, t: m.ExpirePoints(customer_id=c, points=5, occurred_at=t),
    ),
    "revoke_points": (
        [lambda c, _, t: m.EarnPoints(customer_id=c, points=5, order_id="o1", occurred_at=t)],
        lambda c, _, t: m.RevokePoints(customer_id=c, points=5, order_id="o1", occurred_at=t),
    ),
    "tier": ([], lambda c, _, t: m.ChangeTier(customer_id=c, tier="gold", occurred_at=t)),
    "campaign_outcome": (
        [
            lambda c, _, t: m.SetConsent(
                customer_id=c, purpose="email_marketing", granted=True, occurred_at=t
            ),
            lambda c, _, t: TargetForCampaign(
                customer_id=c,
                campaign_id="c1",
                group="treatment",
                purpose="email_marketing",
                channel="email",
                max_touches=3,
                window_days=30,
                occurred_at=t,
            ),
        ],
        lambda c, _, t: m.RecordCampaignOutcome(
            customer_id=c, campaign_id="c1", outcome="opened", occurred_at=t
        ),
    ),
}


def test_every_command_type_is_covered() -> None:
    assert set(COMMANDS) | {"register"} == set(m.COMMAND_TYPES)


def _pair(service: CommandService, ctx: Context) -> tuple[UUID, UUID]:
    ids = []
    for name in ("Ada", "Dup"):
        outcome = service.execute(m.RegisterCustomer(name=name, occurred_at=REGISTERED), ctx)
        assert outcome.customer_id is not None
        ids.append(outcome.customer_id)
    return ids[0], ids[1]


@pytest.mark.parametrize("kind", sorted(COMMANDS))
def test_every_command_records_its_business_time_on_every_event(
    kind: str, service: CommandService, store: EventStore, ctx: Context
) -> None:
    customer, duplicate = _pair(service, ctx)
    setup, build = COMMANDS[kind]
    for step in setup:
        service.execute(step(customer, duplicate, LATER - timedelta(days=1)), ctx)
    head = store.head()
    outcome = service.execute(build(customer, duplicate, LATER), ctx)
    assert outcome.events, kind
    recorded = [
        event
        for notification in store.notifications(head, 100)
        if isinstance(event := store.mapper.to_domain_event(notification), CustomerEvent)
    ]
    assert recorded and {e.occurred_at for e in recorded} == {LATER}
    assert all(e.timestamp > LATER for e in recorded)  # recorded_at stays the store's time


@pytest.mark.parametrize("kind", sorted(COMMANDS))
def test_no_command_is_dated_before_the_customer_registered(
    kind: str, service: CommandService, store: EventStore, ctx: Context
) -> None:
    customer, duplicate = _pair(service, ctx)
    setup, build = COMMANDS[kind]
    for step in setup:
        service.execute(step(customer, duplicate, LATER), ctx)
    head = store.head()
    with pytest.raises(errors.InvalidInput) as caught:
        service.execute(build(customer, duplicate, REGISTERED - timedelta(seconds=1)), ctx)
    assert caught.value.field == "occurred_at"
    assert "registration" in caught.value.reason or "merge" in caught.value.reason
    assert store.head() == head  # nothing half-applied


@pytest.mark.parametrize("kind", ["register", *sorted(COMMANDS)])
@pytest.mark.parametrize(
    ("moment", "reason"),
    [
        (timedelta(minutes=10), "future"),  # from now, when the test runs
        (datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), "CLIENTELE_BUSINESS_TIME_FLOOR"),
    ],
)
def test_business_time_is_not_in_the_future_nor_before_the_floor(
    kind: str, moment: datetime | timedelta, reason: str, service: CommandService, ctx: Context
) -> None:
    when = datetime.now(UTC) + moment if isinstance(moment, timedelta) else moment
    customer, duplicate = _pair(service, ctx)
    command = (
        m.RegisterCustomer(name="New", occurred_at=when)
        if kind == "register"
        else COMMANDS[kind][1](customer, duplicate, when)
    )
    with pytest.raises(errors.InvalidInput, match=reason) as caught:
        service.execute(command, ctx)
    assert caught.value.field == "occurred_at"


def test_the_floor_is_configurable(store: EventStore, ctx: Context) -> None:
    floor = datetime(2000, 1, 1, tzinfo=UTC)
    service = CommandService(store, index_key="k", business_time_floor=floor)
    with pytest.raises(errors.InvalidInput, match="2000-01-01"):
        service.execute(m.RegisterCustomer(name="Old", occurred_at=REGISTERED), ctx)
    assert service.execute(m.RegisterCustomer(name="New", occurred_at=floor), ctx).customer_id


def test_a_back_dated_registration_is_its_business_time(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    outcome = service.execute(m.RegisterCustomer(name="Ada", occurred_at=REGISTERED), ctx)
    assert outcome.customer_id is not None
    customer = store.customer(outcome.customer_id)
    assert customer.registered_at == REGISTERED
    event = next(store.customer_events(customer.id))
    assert (event.occurred_at, event.timestamp > REGISTERED) == (REGISTERED, True)


def test_without_a_time_events_are_never_dated_before_a_registration_ahead_of_the_clock(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    """A registration dated a little ahead (within the skew): later commands without a time
    are dated at that registration rather than refused."""
    ahead = datetime.now(UTC) + timedelta(minutes=3)
    outcome = service.execute(m.RegisterCustomer(name="Ada", occurred_at=ahead), ctx)
    assert outcome.customer_id is not None
    service.execute(m.TagCustomer(customer_id=outcome.customer_id, tag="vip"), ctx)
    tagged = list(store.customer_events(outcome.customer_id))[-1]
    assert tagged.occurred_at == ahead


def test_an_unmerge_is_not_dated_before_its_merge(service: CommandService, ctx: Context) -> None:
    survivor, duplicate = _pair(service, ctx)
    service.execute(
        m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate, occurred_at=LATER), ctx
    )
    with pytest.raises(errors.InvalidInput, match="before the merge"):
        service.execute(
            m.UnmergeCustomers(
                customer_id=survivor, duplicate_id=duplicate, occurred_at=LATER - timedelta(days=1)
            ),
            ctx,
        )
