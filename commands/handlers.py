"""Command handlers: small functions that normalise input, load, let the domain decide, and
keep the email and external-id indexes in step. Each returns the id of the customer the
outcome is about.

A command names its customer by ``customer_id`` or by ``customer_ref`` (one of their external
ids), resolved against the store's index inside the unit of work
(:func:`commands.handler_context.addressed`), never a read model: an id held by a merged
customer names the FINAL survivor of its merge chain, who answers for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID, uuid4

from commands import messages as m
from commands.external_ids import move_ids, registered_before, registration_ids
from commands.handler_context import Env, addressed, code, optional
from domain import text_policy as tp
from domain import values as v
from domain.campaign import Outcome
from domain.customer import Customer
from domain.errors import (
    CustomerExists,
    EmailTaken,
    InvalidInput,
)
from domain.event_base import Meta
from domain.external_ids import normalise_external_ids
from domain.merging import erase, merge, unmerge
from domain.payloads import normalise_attributes, normalise_items

C = TypeVar("C", bound=m.Command)
Handler = Callable[[Any, Env], UUID]
HANDLERS: dict[type[m.Command], Handler] = {}


def handles(
    command_type: type[C],
) -> Callable[[Callable[[C, Env], UUID]], Callable[[C, Env], UUID]]:
    def register(func: Callable[[C, Env], UUID]) -> Callable[[C, Env], UUID]:
        HANDLERS[command_type] = func
        return func

    return register


@handles(m.RegisterCustomer)
def register(command: m.RegisterCustomer, env: Env) -> UUID:
    """A new customer, or the live customer already holding one of its external ids
    (idempotent: nothing is recorded, the other fields are not applied)."""
    name = v.normalise_name(command.name)
    email = optional(command.email, v.normalise_email)
    phone = optional(command.phone, lambda p: v.normalise_phone(p, env.default_region))
    given = normalise_attributes(command.attributes)
    attributes = {key: value for key, value in given.items() if value is not None}
    stage = v.parse_enum(v.LifecycleStage, "lifecycle_stage", command.lifecycle_stage)
    source = code("source", command.source, 100)
    external_ids = registration_ids(command)
    when = env.business_time(command.occurred_at)
    existing = registered_before(env.uow, external_ids, command.customer_id)
    if existing is not None:
        return existing
    customer_id = command.customer_id or uuid4()  # a new random id needs no look-up
    if command.customer_id is not None and env.uow.exists(customer_id):
        raise CustomerExists(f"customer {customer_id} already exists", customer_id=str(customer_id))
    if email is not None:
        env.uow.reserve(env.uow.email_id(email), customer_id, _email_taken(email))
    move_ids(env.uow, customer_id, {}, external_ids)
    customer = Customer.register(
        customer_id,
        env.at(when),
        name=name,
        email=email,
        phone=phone,
        attributes=attributes,
        source=source,
        lifecycle_stage=stage,
        external_ids=external_ids,
    )
    env.uow.add(customer)
    return customer_id


def _email_taken(email: str) -> Callable[[UUID], EmailTaken]:
    return lambda holder: EmailTaken(email, holder)


@handles(m.UpdateProfile)
def update_profile(command: m.UpdateProfile, env: Env) -> UUID:
    unknown = set(command.changes) - m.PROFILE_FIELDS
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a profile field")
    changes: dict[str, Any] = {}
    if "name" in command.changes:
        changes["name"] = v.normalise_name(command.changes["name"])
    if "email" in command.changes:
        changes["email"] = optional(command.changes["email"], v.normalise_email)
    if "phone" in command.changes:
        raw = command.changes["phone"]
        changes["phone"] = optional(raw, lambda p: v.normalise_phone(p, env.default_region))
    attributes = normalise_attributes(command.changes.get("attributes", {}))
    external_ids = normalise_external_ids(command.changes.get("external_ids", {}), patch=True)
    customer, meta = addressed(command, env)
    old_email, old_ids = customer.email, dict(customer.external_ids)
    if not customer.update_profile(meta, changes, attributes, external_ids):
        return customer.id
    if customer.email != old_email:
        if customer.email is not None:
            taken = _email_taken(customer.email)
            env.uow.reserve(env.uow.email_id(customer.email), customer.id, taken)
        if old_email is not None:
            env.uow.email_reservation(old_email).release(customer.id)
    move_ids(env.uow, customer.id, old_ids, customer.external_ids)
    return customer.id


@handles(m.RecordContact)
def record_contact(command: m.RecordContact, env: Env) -> UUID:
    channel = v.parse_enum(v.Channel, "channel", command.channel)
    direction = v.parse_enum(v.Direction, "direction", command.direction)
    kind = v.parse_enum(v.ContactKind, "kind", command.kind)
    customer, meta = addressed(command, env)
    customer.record_contact(
        meta,
        channel=channel.value,
        direction=direction.value,
        kind=kind.value,
        subject=tp.normalise_text("subject", command.subject, kind=tp.Text.LINE, max_length=300),
        summary=tp.normalise_text("summary", command.summary, kind=tp.Text.MULTILINE),
        outcome=tp.normalise_text("outcome", command.outcome, kind=tp.Text.LINE, max_length=300),
    )
    return customer.id


@handles(m.TagCustomer)
def tag(command: m.TagCustomer, env: Env) -> UUID:
    normalised = v.normalise_tag(command.tag)
    customer, meta = addressed(command, env)
    customer.tag(meta, normalised)
    return customer.id


@handles(m.UntagCustomer)
def untag(command: m.UntagCustomer, env: Env) -> UUID:
    normalised = v.normalise_tag(command.tag)
    customer, meta = addressed(command, env)
    customer.untag(meta, normalised)
    return customer.id


@handles(m.RecordPurchase)
def record_purchase(command: m.RecordPurchase, env: Env) -> UUID:
    order_id = tp.normalise_identifier("order_id", command.order_id, max_length=100)
    items = normalise_items(command.items)
    amount = v.parse_amount(command.amount)
    currency = v.normalise_currency(command.currency)
    customer, meta = addressed(command, env)
    customer.record_purchase(meta, order_id=order_id, amount=amount, currency=currency, items=items)
    return customer.id


@handles(m.RefundPurchase)
def refund_purchase(command: m.RefundPurchase, env: Env) -> UUID:
    order_id = tp.normalise_identifier("order_id", command.order_id, max_length=100)
    reason = code("reason", command.reason)
    customer, meta = addressed(command, env)
    customer.refund_purchase(meta, order_id=order_id, reason=reason)
    return customer.id


@handles(m.RecordFeedback)
def record_feedback(command: m.RecordFeedback, env: Env) -> UUID:
    nps = v.check_score("nps", command.nps, 0, 10)
    csat = v.check_score("csat", command.csat, 1, 5)
    comment = tp.normalise_text("comment", command.comment, kind=tp.Text.MULTILINE)
    customer, meta = addressed(command, env)
    customer.record_feedback(meta, nps=nps, csat=csat, comment=comment)
    return customer.id


@handles(m.SetConsent)
def set_consent(command: m.SetConsent, env: Env) -> UUID:
    purpose = v.parse_enum(v.ConsentPurpose, "purpose", command.purpose)
    granted = v.check_flag("granted", command.granted)
    source = code("source", command.source, 100)
    customer, meta = addressed(command, env)
    customer.set_consent(meta, purpose.value, granted, source)
    return customer.id


@handles(m.ChangeLifecycleStage)
def change_stage(command: m.ChangeLifecycleStage, env: Env) -> UUID:
    stage = v.parse_enum(v.LifecycleStage, "stage", command.stage)
    customer, meta = addressed(command, env)
    customer.change_stage(meta, stage, code("reason", command.reason))
    return customer.id


@handles(m.ChurnCustomer)
def churn(command: m.ChurnCustomer, env: Env) -> UUID:
    customer, meta = addressed(command, env)
    customer.churn(meta, code("reason", command.reason))
    return customer.id


@handles(m.ReactivateCustomer)
def reactivate(command: m.ReactivateCustomer, env: Env) -> UUID:
    customer, meta = addressed(command, env)
    customer.reactivate(meta, code("reason", command.reason))
    return customer.id


def _pair(
    command: m.MergeCustomers | m.UnmergeCustomers, env: Env
) -> tuple[Customer, Customer, Meta]:
    """Survivor, duplicate, and the meta of what the command records on both."""
    survivor, _ = addressed(command, env)
    duplicate = env.uow.customer(command.duplicate_id)
    return survivor, duplicate, env.at(env.business_time(command.occurred_at), survivor, duplicate)


@handles(m.MergeCustomers)
def merge_customers(command: m.MergeCustomers, env: Env) -> UUID:
    """The duplicate keeps its external ids: held by a merged customer, they answer for the
    final survivor (and come back with an unmerge)."""
    survivor, duplicate, meta = _pair(command, env)
    for owner in merge(survivor, duplicate, meta, env.merge_part_size):
        env.uow.data_copies(owner).add(survivor.id)
    if duplicate.email is not None:
        env.uow.email_reservation(duplicate.email).release(duplicate.id)
        if survivor.email == duplicate.email:
            taken = _email_taken(survivor.email)
            env.uow.reserve(env.uow.email_id(survivor.email), survivor.id, taken)
    return survivor.id


@handles(m.UnmergeCustomers)
def unmerge_customers(command: m.UnmergeCustomers, env: Env) -> UUID:
    survivor, duplicate, meta = _pair(command, env)
    survivor_email = survivor.email
    for owner in unmerge(survivor, duplicate, meta, env.merge_part_size):
        env.uow.data_copies(owner).add(survivor.id)
    if survivor_email is not None and survivor.email != survivor_email:
        env.uow.email_reservation(survivor_email).release(survivor.id)
    if duplicate.email is not None:
        taken = _email_taken(duplicate.email)
        env.uow.reserve(env.uow.email_id(duplicate.email), duplicate.id, taken)
    return survivor.id


@handles(m.EraseCustomer)
def erase_customer(command: m.EraseCustomer, env: Env) -> UUID:
    """Erase the person; their email and every external id they (and the duplicates merged
    into them) held are released."""
    customer, meta = addressed(command, env)
    email = customer.email
    reason = code("reason", command.reason)
    for person, held in erase(customer, env.uow.customer, env.uow.copies_of, meta, reason):
        move_ids(env.uow, person.id, held, {})
    if email is not None:
        env.uow.email_reservation(email).release(customer.id)
    return customer.id


_POINTS = {
    m.RedeemPoints: Customer.redeem_points,
    m.ExpirePoints: Customer.expire_points,
}


def points(command: m.RedeemPoints | m.ExpirePoints, env: Env) -> UUID:
    v.check_score("points", command.points, 1, v.MAX_SAFE_INTEGER)
    reason = code("reason", command.reason)
    customer, meta = addressed(command, env)
    _POINTS[type(command)](customer, meta, command.points, reason)
    return customer.id


for _points_command in _POINTS:
    HANDLERS[_points_command] = points


def _order(command: m.EarnPoints | m.RevokePoints) -> str | None:
    if command.order_id is None:
        return None
    return tp.normalise_identifier("order_id", command.order_id, max_length=100)


@handles(m.EarnPoints)
def earn_points(command: m.EarnPoints, env: Env) -> UUID:
    v.check_score("points", command.points, 1, v.MAX_SAFE_INTEGER)
    reason = code("reason", command.reason)
    expires_at = None
    if command.expires_at is not None:
        expires_at = v.parse_timestamp("expires_at", command.expires_at)
    customer, meta = addressed(command, env)
    customer.earn_points(
        meta, command.points, reason, order_id=_order(command), expires_at=expires_at
    )
    return customer.id


@handles(m.RevokePoints)
def revoke_points(command: m.RevokePoints, env: Env) -> UUID:
    v.check_score("points", command.points, 1, v.MAX_SAFE_INTEGER)
    reason = code("reason", command.reason)
    order_id = _order(command)
    assert order_id is not None
    customer, meta = addressed(command, env)
    customer.revoke_points(meta, command.points, order_id, reason)
    return customer.id


@handles(m.ChangeTier)
def change_tier(command: m.ChangeTier, env: Env) -> UUID:
    tier = v.normalise_tag(command.tier, "tier")
    reason = code("reason", command.reason)
    spend = None
    if command.spend is not None:
        spend = {
            v.normalise_currency(currency): str(v.parse_amount(amount))
            for currency, amount in command.spend.items()
        }
    customer, meta = addressed(command, env)
    customer.change_tier(meta, tier, reason, spend)
    return customer.id


@handles(m.RecordCampaignOutcome)
def record_campaign_outcome(command: m.RecordCampaignOutcome, env: Env) -> UUID:
    campaign_id = tp.normalise_identifier("campaign_id", command.campaign_id, max_length=100)
    outcome = v.parse_enum(Outcome, "outcome", command.outcome)
    hard = v.check_flag("hard", command.hard)
    customer, meta = addressed(command, env)
    customer.record_campaign_outcome(meta, campaign_id=campaign_id, outcome=outcome, hard=hard)
    return customer.id
