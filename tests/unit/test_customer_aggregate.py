"""The ``Customer`` aggregate on its own, what it records: registration, profile updates, tags,
purchases, feedback, consents, points and tiers — given its past events, when a command, then the
events (or the refusal, with no event). Lifecycle, churn, erasure and merges are in
``test_customer_lifecycle``; the given/when/rejected harness is in ``aggregate_support``.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain import errors
from domain.customer import Customer
from domain.external_ids import MAX_EXTERNAL_IDS
from domain.values import MAX_TAGS_PER_CUSTOMER, LifecycleStage
from tests.unit.aggregate_support import (
    ADA,
    REGISTERED_AT,
    Command,
    churn,
    collected,
    earn,
    fold,
    given,
    meta,
    purchase,
    rejected,
    tag,
    when,
)

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
        (
            "customer.tier_changed",
            {"tier": "gold", "previous_tier": None, "reason": None, "spend": None},
        )
    ]
    assert when(given(gold), gold) == []
