"""The command side end to end on the in-memory store: rules, idempotency, batches, indexes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from domain import errors
from domain.values import MAX_TAGS_PER_CUSTOMER
from infra.feed_queries import START, by_customer
from infra.store import EventStore


def register(service: CommandService, ctx: Context, **fields: object) -> UUID:
    fields.setdefault("name", "Ada Lovelace")
    outcome = service.execute(m.RegisterCustomer(**fields), ctx)  # type: ignore[arg-type]
    assert outcome.customer_id is not None
    return outcome.customer_id


def test_register_normalises_and_reports_version_and_position(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    outcome = service.execute(
        m.RegisterCustomer(name=" Ada  Lovelace ", email="ADA@Example.com", phone="030 901820"), ctx
    )
    assert (outcome.status, outcome.version) == ("accepted", 1)
    # positions are always customer-event positions (read models never see index rows)
    assert outcome.position == store.position_of(outcome.customer_id, 1)  # type: ignore[arg-type]
    assert outcome.position is not None and outcome.position < store.head()
    customer = store.customer(outcome.customer_id)  # type: ignore[arg-type]
    assert (customer.name, customer.email, customer.phone) == (
        "Ada Lovelace",
        "ada@example.com",
        "+4930901820",
    )
    assert customer.lifecycle_stage == "prospect"
    event = next(store.customer_events(customer.id))
    assert (event.actor, event.correlation_id, event.causation_id) == ("unit-test", "corr-1", None)


def test_taken_email_is_a_conflict_naming_the_owner(service: CommandService, ctx: Context) -> None:
    first = register(service, ctx, email="ada@example.com")
    with pytest.raises(errors.EmailTaken) as caught:
        register(service, ctx, name="Imposter", email=" ADA@example.COM")
    assert caught.value.existing_customer_id == first
    other = register(service, ctx, name="Bob", email="bob@example.com")
    with pytest.raises(errors.EmailTaken):
        service.execute(
            m.UpdateProfile(customer_id=other, changes={"email": "ada@example.com"}), ctx
        )


def test_email_is_released_by_change_and_erasure(service: CommandService, ctx: Context) -> None:
    ada = register(service, ctx, email="ada@example.com")
    service.execute(m.UpdateProfile(customer_id=ada, changes={"email": "ada@new.example"}), ctx)
    bob = register(service, ctx, name="Bob", email="ada@example.com")
    service.execute(m.EraseCustomer(customer_id=bob), ctx)
    assert register(service, ctx, name="Carol", email="ada@example.com") not in (ada, bob)


def test_purchase_is_idempotent_by_order_id(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    cid = register(service, ctx)
    first = service.execute(
        m.RecordPurchase(customer_id=cid, order_id="A-1", amount="12.50", currency="eur"), ctx
    )
    assert first.events == ("customer.purchase_recorded", "customer.lifecycle_stage_changed")
    again = service.execute(
        m.RecordPurchase(customer_id=cid, order_id="A-1", amount="12.5", currency="EUR"), ctx
    )
    assert (again.version, again.position, again.events) == (first.version, first.position, ())
    with pytest.raises(errors.PurchaseConflict):
        service.execute(
            m.RecordPurchase(customer_id=cid, order_id="A-1", amount="13", currency="EUR"), ctx
        )
    customer = store.customer(cid)
    assert customer.purchase_totals() == {"EUR": Decimal("12.50")}
    assert customer.lifecycle_stage == "new"


def test_churned_customers_accept_contacts_and_purchases_which_reactivate(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    cid = register(service, ctx)
    service.execute(m.ChurnCustomer(customer_id=cid, reason="moved away"), ctx)
    with pytest.raises(errors.InvalidTransition):
        service.execute(m.TagCustomer(customer_id=cid, tag="vip"), ctx)
    with pytest.raises(errors.InvalidTransition):
        service.execute(m.UpdateProfile(customer_id=cid, changes={"name": "New"}), ctx)
    service.execute(
        m.RecordContact(customer_id=cid, channel="phone", direction="outbound", kind="care"), ctx
    )
    service.execute(m.SetConsent(customer_id=cid, purpose="email_marketing", granted=False), ctx)
    outcome = service.execute(
        m.RecordPurchase(customer_id=cid, order_id="B-1", amount="5", currency="USD"), ctx
    )
    assert outcome.events == ("customer.purchase_recorded", "customer.reactivated")
    customer = store.customer(cid)
    assert (customer.status, customer.lifecycle_stage, customer.contacts_count) == (
        "active",
        "active",
        1,
    )
    with pytest.raises(errors.InvalidTransition):
        service.execute(m.ReactivateCustomer(customer_id=cid), ctx)


def test_erased_and_merged_customers_reject_everything(
    service: CommandService, ctx: Context
) -> None:
    survivor = register(service, ctx, name="Ann", email="ann@example.com")
    duplicate = register(service, ctx, name="Ann B", email="ann.b@example.com")
    erased = register(service, ctx, name="Gone")
    service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    service.execute(m.EraseCustomer(customer_id=erased), ctx)
    for command in (m.TagCustomer(tag="x"), m.RecordFeedback(nps=3), m.ChurnCustomer()):
        with pytest.raises(errors.CustomerMerged) as merged:
            service.execute(type(command)(**{**command.__dict__, "customer_id": duplicate}), ctx)
        assert merged.value.survivor_id == survivor
        with pytest.raises(errors.CustomerErased):
            service.execute(type(command)(**{**command.__dict__, "customer_id": erased}), ctx)
    with pytest.raises(errors.CustomerErased):
        service.execute(m.EraseCustomer(customer_id=erased), ctx)


def test_merge_and_unmerge_round_trip(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    survivor = register(service, ctx, name="Ann")
    duplicate = register(service, ctx, name="Ann B", email="ann@example.com", phone="+4930901820")
    service.execute(m.TagCustomer(customer_id=survivor, tag="vip"), ctx)
    service.execute(m.TagCustomer(customer_id=duplicate, tag="newsletter"), ctx)
    service.execute(
        m.RecordPurchase(customer_id=duplicate, order_id="D-1", amount="9.99", currency="EUR"), ctx
    )
    before = store.customer(survivor)
    service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    merged = store.customer(survivor)
    assert merged.tags == ["vip", "newsletter"]
    assert merged.email == "ann@example.com"
    assert list(merged.purchases) == ["D-1"]
    with pytest.raises(errors.EmailTaken) as caught:
        register(service, ctx, name="Other", email="ann@example.com")
    assert caught.value.existing_customer_id == survivor

    service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), ctx)
    restored = store.customer(survivor)
    assert (restored.tags, restored.email, restored.purchases) == (before.tags, None, {})
    back = store.customer(duplicate)
    assert (back.status, back.email, back.merged_into) == ("active", "ann@example.com", None)
    with pytest.raises(errors.EmailTaken) as again:
        register(service, ctx, name="Other", email="ann@example.com")
    assert again.value.existing_customer_id == duplicate
    with pytest.raises(errors.InvalidInput):
        service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=survivor), ctx)


def test_tag_limit_and_normalisation(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    cid = register(service, ctx)
    batch = [
        m.TagCustomer(customer_id=cid, tag=f"Tag {i}") for i in range(MAX_TAGS_PER_CUSTOMER + 1)
    ]
    outcomes = service.execute_batch(batch, ctx)
    assert [o.status for o in outcomes].count("accepted") == MAX_TAGS_PER_CUSTOMER
    assert isinstance(outcomes[-1].problem, errors.LimitExceeded)
    assert store.customer(cid).tags[:2] == ["tag-0", "tag-1"]


def test_expected_version_is_checked(service: CommandService, ctx: Context) -> None:
    cid = register(service, ctx)
    service.execute(m.TagCustomer(customer_id=cid, tag="a", expected_version=1), ctx)
    with pytest.raises(errors.VersionConflict) as caught:
        service.execute(m.TagCustomer(customer_id=cid, tag="b", expected_version=1), ctx)
    assert caught.value.details["actual_version"] == 2


def test_idempotency_key_returns_first_outcome_or_refuses_other_body(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    first = service.execute(m.RegisterCustomer(name="Ada", idempotency_key="req-1"), ctx)
    head = store.head()
    again = service.execute(m.RegisterCustomer(name="Ada", idempotency_key="req-1"), ctx)
    assert (again.customer_id, again.version, again.position) == (
        first.customer_id,
        first.version,
        first.position,
    )
    assert again.replayed and store.head() == head
    with pytest.raises(errors.IdempotencyKeyReused):
        service.execute(m.RegisterCustomer(name="Eve", idempotency_key="req-1"), ctx)


def test_batch_isolates_bad_commands_and_commits_once(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    ada = register(service, ctx, email="ada@example.com")
    head = store.head()
    outcomes = service.execute_batch(
        [
            m.RegisterCustomer(name="Bob", email="bob@example.com", idempotency_key="b"),
            m.RegisterCustomer(name="Bob again", email="bob@example.com"),  # taken in this batch
            m.TagCustomer(customer_id=uuid4(), tag="x"),  # unknown customer
            m.MergeCustomers(customer_id=ada, duplicate_id=uuid4()),  # half-valid: rolled back
            m.TagCustomer(customer_id=ada, tag="vip"),
            m.RecordFeedback(customer_id=ada, nps=11),
            m.RegisterCustomer(name="Bob", email="bob@example.com", idempotency_key="b"),
        ],
        ctx,
    )
    statuses = [o.status for o in outcomes]
    assert statuses == [
        "accepted",
        "rejected",
        "rejected",
        "rejected",
        "accepted",
        "rejected",
        "accepted",
    ]
    assert isinstance(outcomes[1].problem, errors.EmailTaken)
    assert isinstance(outcomes[2].problem, errors.CustomerNotFound)
    assert isinstance(outcomes[3].problem, errors.CustomerNotFound)
    assert isinstance(outcomes[5].problem, errors.InvalidInput)
    assert outcomes[6].customer_id == outcomes[0].customer_id
    assert outcomes[6].position == outcomes[0].position
    ada_now = store.customer(ada)
    assert (ada_now.version, ada_now.tags, ada_now.status) == (2, ["vip"], "active")
    # one transaction: positions are contiguous after the previous head
    positions = [n.id for n in store.notifications(head, 100)]
    assert positions == list(range(head + 1, head + 1 + len(positions)))


def test_time_travel_by_version_and_timestamp(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    cid = register(service, ctx)
    for i in range(12):  # crosses the snapshot interval of 5 twice
        service.execute(m.TagCustomer(customer_id=cid, tag=f"t{i}"), ctx)
    events = list(store.customer_events(cid))
    assert store.customer(cid, version=4).tags == ["t0", "t1", "t2"]
    middle = events[6].timestamp
    assert store.customer_as_of(cid, middle).version == 7
    with pytest.raises(errors.CustomerNotFound):
        store.customer_as_of(cid, events[0].timestamp - timedelta(seconds=1))
    assert store.customer(cid).version == 13
    assert store.snapshots is not None
    assert [s.originator_version for s in store.snapshots.get(cid)] == [5, 10]


def test_occurred_at_is_business_time_and_not_in_the_future(
    service: CommandService, store: EventStore, ctx: Context
) -> None:
    cid = register(service, ctx, occurred_at=datetime(2020, 1, 1, tzinfo=UTC))
    when = datetime(2024, 5, 1, 12, tzinfo=UTC)
    service.execute(
        m.RecordContact(customer_id=cid, channel="email", direction="inbound", occurred_at=when),
        ctx,
    )
    assert store.customer(cid).last_contact_at == when
    with pytest.raises(errors.InvalidInput, match="future"):
        service.execute(
            m.RecordContact(
                customer_id=cid,
                channel="email",
                direction="inbound",
                occurred_at=datetime.now(UTC) + timedelta(days=1),
            ),
            ctx,
        )
    with pytest.raises(errors.InvalidInput, match="time zone"):
        service.execute(
            m.RecordContact(
                customer_id=cid,
                channel="email",
                direction="inbound",
                occurred_at=datetime(2024, 1, 1),
            ),
            ctx,
        )


def test_points_and_tiers(service: CommandService, store: EventStore, ctx: Context) -> None:
    cid = register(service, ctx)
    service.execute(m.EarnPoints(customer_id=cid, points=100), ctx)
    service.execute(m.RedeemPoints(customer_id=cid, points=30), ctx)
    with pytest.raises(errors.InvalidTransition):
        service.execute(m.RedeemPoints(customer_id=cid, points=100), ctx)
    service.execute(m.ExpirePoints(customer_id=cid, points=500), ctx)
    service.execute(m.ChangeTier(customer_id=cid, tier="Gold"), ctx)
    customer = store.customer(cid)
    assert (customer.points, customer.tier) == (0, "gold")


def test_parse_command_from_plain_data() -> None:
    command = m.parse_command(
        {"type": "update", "customer_id": str(uuid4()), "name": "X", "phone": None}
    )
    assert isinstance(command, m.UpdateProfile)
    assert command.changes == {"name": "X", "phone": None}
    purchase = m.parse_command(
        {
            "type": "purchase",
            "customer_id": str(uuid4()),
            "order_id": "1",
            "amount": "2.50",
            "currency": "EUR",
        }
    )
    assert isinstance(purchase, m.RecordPurchase)
    with pytest.raises(errors.InvalidInput, match="type"):
        m.parse_command({"type": "explode"})
    with pytest.raises(errors.InvalidInput, match="customer_id"):
        m.parse_command({"type": "tag", "customer_id": "not-a-uuid", "tag": "x"})
    with pytest.raises(errors.InvalidInput, match="colour"):
        m.parse_command({"type": "tag", "customer_id": str(uuid4()), "tag": "x", "colour": "red"})
    with pytest.raises(errors.InvalidInput):
        m.parse_command(["not", "an", "object"])


def test_memory_store_groups_events_by_customer(service: CommandService, ctx: Context) -> None:
    first, second = (register(service, ctx, name=n) for n in ("Ann", "Bob"))
    for tag in ("a", "b"):
        for customer in (first, second):
            service.execute(m.TagCustomer(customer_id=customer, tag=tag), ctx)
    store = service.store
    logged = store.customer_notifications(0, 100)
    grouped = [n for n, _ in by_customer(store, START, 100, store.head())]
    assert [(n.originator_id, n.originator_version) for n in grouped] == sorted(
        (n.originator_id, n.originator_version) for n in logged
    )
    resume = (UUID(str(grouped[2].originator_id)), 3)
    assert [n for n, _ in by_customer(store, resume, 100, store.head())] == grouped[3:]
    below = UUID(str(grouped[-1].originator_id))  # the second customer's id
    assert [n for n, _ in by_customer(store, START, 100, store.head(), below)] == grouped[:3]
