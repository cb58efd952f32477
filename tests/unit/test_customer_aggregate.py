"""The ``Customer`` aggregate on its own: given its past events, when a command, then the events.

No store and no service: ``given`` builds a history with the aggregate's own commands and
rebuilds the customer from those events alone; ``when`` runs one command on it and answers the
new events as ``(type, data)``, checking on the way that folding history plus new events gives
exactly the state the command left (the decided state is the fold of the log); ``rejected``
checks a refused command raises the expected error and leaves no event behind (validate first,
never half of a command's events).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast
from uuid import UUID

import pytest

from domain import errors, merging
from domain.customer import Customer
from domain.event_base import Meta
from domain.events import CustomerEvent
from domain.external_ids import MAX_EXTERNAL_IDS
from domain.values import MAX_TAGS_PER_CUSTOMER, LifecycleStage, Status

ADA = UUID(int=1)
DUPLICATE = UUID(int=2)
REGISTERED_AT = datetime(2024, 1, 1, 9, tzinfo=UTC)
LATER = REGISTERED_AT + timedelta(days=1)

Command = Callable[[Customer], object]
E = TypeVar("E", bound=errors.DomainError)
Emitted = list[tuple[str, dict[str, Any]]]


def meta(at: datetime = LATER) -> Meta:
    return Meta(actor="clerk", correlation_id="corr", causation_id=None, occurred_at=at)


def collected(customer: Customer) -> list[CustomerEvent]:
    """The events ``customer`` triggered since the last call (every one a customer event)."""
    return cast(list[CustomerEvent], customer.collect_events())


def fold(events: Sequence[CustomerEvent]) -> Customer:
    """The customer as the store would load it: each event applied in order, from nothing."""
    customer: Customer | None = None
    for event in events:
        customer = event.mutate(customer)
    assert customer is not None
    return customer


@dataclass(frozen=True)
class History:
    events: tuple[CustomerEvent, ...]

    def customer(self) -> Customer:
        return fold(self.events)


def given(*steps: Command, **registration: Any) -> History:
    """Ada registered (``registration`` overrides her fields), then ``steps`` in order."""
    customer = Customer.register(ADA, meta(REGISTERED_AT), **{"name": "Ada", **registration})
    for step in steps:
        step(customer)
    return History(tuple(collected(customer)))


def when(history: History, command: Command) -> Emitted:
    customer = history.customer()
    command(customer)
    new = collected(customer)
    assert vars(fold([*history.events, *new])) == vars(customer)
    return [(event.TYPE, event.data()) for event in new]


def rejected(history: History, command: Command, error: type[E]) -> E:
    customer = history.customer()
    with pytest.raises(error) as caught:
        command(customer)
    assert collected(customer) == []
    return caught.value


# ------------------------------------------------------------------------- helpers (steps)


def tag(name: str) -> Command:
    return lambda c: c.tag(meta(), name)


def purchase(order_id: str, amount: str = "12.50", currency: str = "EUR") -> Command:
    return lambda c: c.record_purchase(
        meta(), order_id=order_id, amount=Decimal(amount), currency=currency, items=[]
    )


def churn(c: Customer) -> object:
    c.churn(meta(), "moved away")
    return None


def earn(points: int) -> Command:
    return lambda c: c.earn_points(meta(), points, "order")


# ---------------------------------------------------------------------------- registration


def test_registration_records_what_was_given_and_drops_empty_attributes() -> None:
    customer = Customer.register(
        ADA,
        meta(REGISTERED_AT),
        name="Ada",
        email="ada@example.com",
        attributes={"city": "Berlin", "team": None},
        external_ids={"crm": "42"},
    )
    (event,) = collected(customer)
    assert (event.TYPE, event.data()) == (
        "customer.registered",
        {
            "name": "Ada",
            "email": "ada@example.com",
            "phone": None,
            "attributes": {"city": "Berlin"},
            "source": None,
            "lifecycle_stage": "prospect",
            "external_ids": {"crm": "42"},
        },
    )
    ada = fold([event])
    assert (ada.status, ada.lifecycle_stage, ada.registered_at) == (
        "active",
        "prospect",
        REGISTERED_AT,
    )


def test_nobody_is_registered_as_churned() -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        Customer.register(ADA, meta(), name="Ada", lifecycle_stage=LifecycleStage.CHURNED)
    assert caught.value.details["field"] == "lifecycle_stage"


def test_no_event_is_dated_before_the_registration() -> None:
    too_early = meta(REGISTERED_AT - timedelta(seconds=1))
    error = rejected(given(), lambda c: c.tag(too_early, "x"), errors.InvalidInput)
    assert error.details["field"] == "occurred_at"


# --------------------------------------------------------------------------------- profile


def test_a_profile_update_records_only_what_changes() -> None:
    history = given(email="ada@example.com", attributes={"city": "Berlin"})
    change = {"name": "Ada King", "email": "ada@example.com"}
    assert when(
        history, lambda c: c.update_profile(meta(), change, {"city": "Berlin", "team": "R&D"})
    ) == [
        (
            "customer.profile_updated",
            {"changes": {"name": "Ada King"}, "attributes": {"team": "R&D"}, "external_ids": {}},
        )
    ]


def test_an_update_that_changes_nothing_records_nothing() -> None:
    history = given(email="ada@example.com")
    assert when(history, lambda c: c.update_profile(meta(), {"email": "ada@example.com"}, {})) == []


def test_the_name_cannot_be_removed() -> None:
    rejected(given(), lambda c: c.update_profile(meta(), {"name": None}, {}), errors.InvalidInput)


def test_external_ids_are_bounded_and_a_removal_makes_room() -> None:
    full = given(external_ids={f"s{i}": str(i) for i in range(MAX_EXTERNAL_IDS)})
    rejected(full, lambda c: c.update_profile(meta(), {}, {}, {"extra": "1"}), errors.LimitExceeded)
    swap = {"extra": "1", "s0": None}
    assert when(full, lambda c: c.update_profile(meta(), {}, {}, swap)) == [
        ("customer.profile_updated", {"changes": {}, "attributes": {}, "external_ids": swap})
    ]


# ------------------------------------------------------------------------------------ tags


def test_a_tag_is_recorded_once() -> None:
    assert when(given(), tag("vip")) == [("customer.tagged", {"tag": "vip"})]
    assert when(given(tag("vip")), tag("vip")) == []


def test_tags_are_bounded() -> None:
    full = given(*(tag(f"t{i}") for i in range(MAX_TAGS_PER_CUSTOMER)))
    rejected(full, tag("one-more"), errors.LimitExceeded)


def test_untagging_removes_a_present_tag_only() -> None:
    assert when(given(tag("vip")), lambda c: c.untag(meta(), "vip")) == [
        ("customer.untagged", {"tag": "vip"})
    ]
    assert when(given(), lambda c: c.untag(meta(), "vip")) == []


# ------------------------------------------------------------------------------- purchases


def test_a_prospects_first_purchase_makes_them_new() -> None:
    assert when(given(), purchase("o-1")) == [
        (
            "customer.purchase_recorded",
            {"order_id": "o-1", "amount": Decimal("12.50"), "currency": "EUR", "items": []},
        ),
        (
            "customer.lifecycle_stage_changed",
            {"stage": "new", "previous_stage": "prospect", "reason": "first_purchase"},
        ),
    ]


def test_the_same_order_again_is_a_no_op_and_another_amount_a_conflict() -> None:
    history = given(purchase("o-1"))
    assert when(history, purchase("o-1")) == []
    error = rejected(history, purchase("o-1", "13.00"), errors.PurchaseConflict)
    assert error.details["order_id"] == "o-1"
    rejected(history, purchase("o-1", currency="USD"), errors.PurchaseConflict)


def test_a_purchase_reactivates_a_churned_customer() -> None:
    emitted = when(given(purchase("o-1"), churn), purchase("o-2"))
    assert [kind for kind, _ in emitted] == ["customer.purchase_recorded", "customer.reactivated"]
    assert emitted[1][1] == {"reason": "purchase"}


def test_purchase_totals_are_per_currency() -> None:
    ada = given(purchase("o-1"), purchase("o-2", "0.50"), purchase("o-3", "3", "USD")).customer()
    assert ada.purchase_totals() == {"EUR": Decimal("13.00"), "USD": Decimal("3")}


# ------------------------------------------------------------------- feedback and consents


def test_feedback_needs_a_score_or_a_comment_and_churned_customers_may_give_it() -> None:
    rejected(
        given(),
        lambda c: c.record_feedback(meta(), nps=None, csat=None, comment=None),
        errors.InvalidInput,
    )
    assert when(
        given(churn), lambda c: c.record_feedback(meta(), nps=3, csat=None, comment=None)
    ) == [("customer.feedback_recorded", {"nps": 3, "csat": None, "comment": None})]


def test_consent_is_recorded_when_it_changes_and_may_always_be_withdrawn() -> None:
    grant: Command = lambda c: c.set_consent(meta(), "email", True, "form")  # noqa: E731
    withdraw: Command = lambda c: c.set_consent(meta(), "email", False, None)  # noqa: E731
    assert when(given(), grant) == [
        ("customer.consent_granted", {"purpose": "email", "source": "form"})
    ]
    assert when(given(grant), grant) == []
    assert when(given(grant, churn), withdraw) == [
        ("customer.consent_withdrawn", {"purpose": "email", "source": None})
    ]


# ---------------------------------------------------------------- lifecycle and churn


def test_a_stage_change_names_the_previous_stage_and_the_same_stage_is_a_no_op() -> None:
    loyal: Command = lambda c: c.change_stage(meta(), LifecycleStage.LOYAL, "ten orders")  # noqa: E731
    assert when(given(), loyal) == [
        (
            "customer.lifecycle_stage_changed",
            {"stage": "loyal", "previous_stage": "prospect", "reason": "ten orders"},
        )
    ]
    assert when(given(loyal), loyal) == []


def test_churning_goes_through_churn_once_and_back_through_reactivate() -> None:
    rejected(
        given(),
        lambda c: c.change_stage(meta(), LifecycleStage.CHURNED, None),
        errors.InvalidTransition,
    )
    assert when(given(), churn) == [
        ("customer.churned", {"reason": "moved away", "previous_stage": "prospect"})
    ]
    churned = given(churn)
    assert churned.customer().status == Status.CHURNED
    rejected(churned, churn, errors.InvalidTransition)
    assert when(churned, lambda c: c.reactivate(meta(), "called back")) == [
        ("customer.reactivated", {"reason": "called back"})
    ]
    rejected(given(), lambda c: c.reactivate(meta(), None), errors.InvalidTransition)


@pytest.mark.parametrize(
    "command",
    [
        tag("vip"),
        lambda c: c.untag(meta(), "vip"),
        lambda c: c.update_profile(meta(), {"name": "Eve"}, {}),
        lambda c: c.change_stage(meta(), LifecycleStage.LOYAL, None),
        lambda c: c.redeem_points(meta(), 1, None),
    ],
    ids=["tag", "untag", "update", "stage", "redeem"],
)
def test_a_churned_customer_is_reactivated_before_other_changes(command: Command) -> None:
    rejected(given(tag("vip"), earn(5), churn), command, errors.InvalidTransition)


# ------------------------------------------------------------------------ points and tiers


def test_points_are_earned_redeemed_within_the_balance_and_expire_down_to_zero() -> None:
    history = given(earn(10))
    assert when(history, lambda c: c.redeem_points(meta(), 4, "voucher")) == [
        ("customer.points_redeemed", {"points": 4, "reason": "voucher"})
    ]
    rejected(history, lambda c: c.redeem_points(meta(), 11, None), errors.InvalidTransition)
    assert when(history, lambda c: c.expire_points(meta(), 25, "year end")) == [
        ("customer.points_expired", {"points": 10, "reason": "year end"})
    ]
    assert when(given(), lambda c: c.expire_points(meta(), 5, None)) == []
    assert history.customer().points == 10


@pytest.mark.parametrize("method", ["earn_points", "redeem_points", "expire_points"])
@pytest.mark.parametrize("points", [0, -3, True, 1.5, "2"])
def test_points_are_positive_integers(method: str, points: Any) -> None:
    error = rejected(
        given(earn(10)), lambda c: getattr(c, method)(meta(), points, None), errors.InvalidInput
    )
    assert error.field == "points"


def test_a_tier_change_names_the_previous_tier_once() -> None:
    gold: Command = lambda c: c.change_tier(meta(), "gold")  # noqa: E731
    assert when(given(), gold) == [
        ("customer.tier_changed", {"tier": "gold", "previous_tier": None})
    ]
    assert when(given(gold), gold) == []


# -------------------------------------------------------------- erased and merged customers

EVERY_COMMAND: dict[str, Command] = {
    "update": lambda c: c.update_profile(meta(), {"name": "Eve"}, {}),
    "contact": lambda c: c.record_contact(
        meta(),
        channel="phone",
        direction="inbound",
        kind="call",
        subject=None,
        summary=None,
        outcome=None,
    ),
    "tag": tag("new"),
    "untag": lambda c: c.untag(meta(), "vip"),
    "purchase": purchase("o-9"),
    "feedback": lambda c: c.record_feedback(meta(), nps=9, csat=None, comment=None),
    "consent": lambda c: c.set_consent(meta(), "email", False, None),
    "stage": lambda c: c.change_stage(meta(), LifecycleStage.LOYAL, None),
    "churn": churn,
    "reactivate": lambda c: c.reactivate(meta(), None),
    "earn": earn(1),
    "redeem": lambda c: c.redeem_points(meta(), 1, None),
    "expire": lambda c: c.expire_points(meta(), 1, None),
    "tier": lambda c: c.change_tier(meta(), "gold"),
}


def erased() -> History:
    def erase(c: Customer) -> object:
        return merging.erase(c, lambda _: c, lambda _: [], meta(), "asked")

    return given(tag("vip"), earn(5), erase, email="ada@example.com")


def merged() -> History:
    """Ada, merged as the duplicate into another customer."""

    def merge(c: Customer) -> object:
        survivor = Customer.register(DUPLICATE, meta(REGISTERED_AT), name="Ada L.")
        return merging.merge(survivor, c, meta())

    return given(tag("vip"), earn(5), merge)


def test_erasure_forgets_the_personal_data_and_keeps_the_facts() -> None:
    ada = erased().customer()
    assert (ada.status, ada.name, ada.email, ada.attributes, ada.external_ids) == (
        "erased",
        None,
        None,
        {},
        {},
    )
    assert (ada.tags, ada.points) == (["vip"], 5)


@pytest.mark.parametrize("name", sorted(EVERY_COMMAND))
def test_an_erased_customer_refuses_every_command(name: str) -> None:
    rejected(erased(), EVERY_COMMAND[name], errors.CustomerErased)


@pytest.mark.parametrize("name", sorted(EVERY_COMMAND))
def test_a_merged_customer_refuses_every_command_naming_the_survivor(name: str) -> None:
    error = rejected(merged(), EVERY_COMMAND[name], errors.CustomerMerged)
    assert error.details["survivor_id"] == str(DUPLICATE)
