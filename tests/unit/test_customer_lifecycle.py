"""The ``Customer`` aggregate on its own, its status: lifecycle stage changes, churn and
reactivation (a churned customer is reactivated before other changes), and erased and merged
customers, who keep the facts, forget personal data and refuse every command. The
given/when/rejected harness is in ``aggregate_support``.
"""

from __future__ import annotations

import pytest

from domain import errors, merging
from domain.customer import Customer
from domain.values import LifecycleStage, Status
from tests.unit.aggregate_support import (
    DUPLICATE,
    REGISTERED_AT,
    Command,
    History,
    churn,
    earn,
    given,
    meta,
    purchase,
    rejected,
    tag,
    when,
)

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
