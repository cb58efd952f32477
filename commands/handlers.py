"""Command handlers: small functions that normalise input, load, let the domain decide, and
keep the email index in step. Each returns the id of the customer the outcome is about.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

from commands import messages as m
from commands.unit_of_work import UnitOfWork
from domain import values as v
from domain.customer import Customer
from domain.errors import CustomerExists, InvalidInput, VersionConflict
from domain.events import Meta
from domain.merging import erase, merge, unmerge
from domain.payloads import normalise_attributes, normalise_items

MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_CODE_LENGTH = 1000


@dataclass(frozen=True)
class Env:
    """What a handler needs besides the unit of work."""

    uow: UnitOfWork
    meta: Meta
    default_region: str

    def at(self, occurred_at: datetime | None) -> Meta:
        """Meta with the caller's business time (validated, in UTC) instead of now."""
        if occurred_at is None:
            return self.meta
        occurred_at = v.parse_timestamp("occurred_at", occurred_at)
        if occurred_at > self.meta.occurred_at + MAX_CLOCK_SKEW:
            raise InvalidInput("occurred_at", "is in the future")
        return Meta(self.meta.actor, self.meta.correlation_id, self.meta.causation_id, occurred_at)


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


def _target(command: m.Command, env: Env) -> Customer:
    """Load the addressed customer and check the expected version, if one was given."""
    if command.customer_id is None:
        raise InvalidInput("customer_id", "is required")
    customer = env.uow.customer(command.customer_id)
    if command.expected_version is not None and command.expected_version != customer.version:
        raise VersionConflict(customer.id, command.expected_version, customer.version)
    return customer


def _code(field: str, value: object, max_length: int = MAX_CODE_LENGTH) -> str | None:
    """An optional short code (sources, reasons): identifier text, stored in the clear."""
    return v.normalise_text(field, value, kind=v.Text.IDENTIFIER, max_length=max_length)


def _optional(value: Any, normalise: Callable[[Any], str]) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return normalise(value)


@handles(m.RegisterCustomer)
def register(command: m.RegisterCustomer, env: Env) -> UUID:
    customer_id = command.customer_id or uuid4()
    name = v.normalise_name(command.name)
    email = _optional(command.email, v.normalise_email)
    phone = _optional(command.phone, lambda p: v.normalise_phone(p, env.default_region))
    given = normalise_attributes(command.attributes)
    attributes = {key: value for key, value in given.items() if value is not None}
    stage = v.parse_enum(v.LifecycleStage, "lifecycle_stage", command.lifecycle_stage)
    source = _code("source", command.source, 100)
    if env.uow.exists(customer_id):
        raise CustomerExists(f"customer {customer_id} already exists", customer_id=str(customer_id))
    if email is not None:
        env.uow.email_reservation(email).reserve(customer_id, email)
    customer = Customer.register(
        customer_id,
        env.meta,
        name=name,
        email=email,
        phone=phone,
        attributes=attributes,
        source=source,
        lifecycle_stage=stage,
    )
    env.uow.add(customer)
    return customer_id


@handles(m.UpdateProfile)
def update_profile(command: m.UpdateProfile, env: Env) -> UUID:
    unknown = set(command.changes) - {"name", "email", "phone", "attributes"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a profile field")
    changes: dict[str, Any] = {}
    if "name" in command.changes:
        changes["name"] = v.normalise_name(command.changes["name"])
    if "email" in command.changes:
        changes["email"] = _optional(command.changes["email"], v.normalise_email)
    if "phone" in command.changes:
        raw = command.changes["phone"]
        changes["phone"] = _optional(raw, lambda p: v.normalise_phone(p, env.default_region))
    attributes = normalise_attributes(command.changes.get("attributes", {}))
    customer = _target(command, env)
    old_email = customer.email
    if not customer.update_profile(env.meta, changes, attributes):
        return customer.id
    if customer.email != old_email:
        if customer.email is not None:
            env.uow.email_reservation(customer.email).reserve(customer.id, customer.email)
        if old_email is not None:
            env.uow.email_reservation(old_email).release(customer.id)
    return customer.id


@handles(m.RecordContact)
def record_contact(command: m.RecordContact, env: Env) -> UUID:
    channel = v.parse_enum(v.Channel, "channel", command.channel)
    direction = v.parse_enum(v.Direction, "direction", command.direction)
    kind = v.parse_enum(v.ContactKind, "kind", command.kind)
    meta = env.at(command.occurred_at)
    customer = _target(command, env)
    customer.record_contact(
        meta,
        channel=channel.value,
        direction=direction.value,
        kind=kind.value,
        subject=v.normalise_text("subject", command.subject, kind=v.Text.LINE, max_length=300),
        summary=v.normalise_text("summary", command.summary, kind=v.Text.MULTILINE),
        outcome=v.normalise_text("outcome", command.outcome, kind=v.Text.LINE, max_length=300),
    )
    return customer.id


@handles(m.TagCustomer)
def tag(command: m.TagCustomer, env: Env) -> UUID:
    normalised = v.normalise_tag(command.tag)
    customer = _target(command, env)
    customer.tag(env.meta, normalised)
    return customer.id


@handles(m.UntagCustomer)
def untag(command: m.UntagCustomer, env: Env) -> UUID:
    normalised = v.normalise_tag(command.tag)
    customer = _target(command, env)
    customer.untag(env.meta, normalised)
    return customer.id


@handles(m.RecordPurchase)
def record_purchase(command: m.RecordPurchase, env: Env) -> UUID:
    order_id = v.normalise_identifier("order_id", command.order_id, max_length=100)
    items = normalise_items(command.items)
    amount = v.parse_amount(command.amount)
    currency = v.normalise_currency(command.currency)
    meta = env.at(command.occurred_at)
    customer = _target(command, env)
    customer.record_purchase(meta, order_id=order_id, amount=amount, currency=currency, items=items)
    return customer.id


@handles(m.RecordFeedback)
def record_feedback(command: m.RecordFeedback, env: Env) -> UUID:
    nps = v.check_score("nps", command.nps, 0, 10)
    csat = v.check_score("csat", command.csat, 1, 5)
    comment = v.normalise_text("comment", command.comment, kind=v.Text.MULTILINE)
    customer = _target(command, env)
    customer.record_feedback(env.meta, nps=nps, csat=csat, comment=comment)
    return customer.id


@handles(m.SetConsent)
def set_consent(command: m.SetConsent, env: Env) -> UUID:
    purpose = v.parse_enum(v.ConsentPurpose, "purpose", command.purpose)
    granted = v.check_flag("granted", command.granted)
    source = _code("source", command.source, 100)
    meta = env.at(command.occurred_at)
    customer = _target(command, env)
    customer.set_consent(meta, purpose.value, granted, source)
    return customer.id


@handles(m.ChangeLifecycleStage)
def change_stage(command: m.ChangeLifecycleStage, env: Env) -> UUID:
    stage = v.parse_enum(v.LifecycleStage, "stage", command.stage)
    customer = _target(command, env)
    customer.change_stage(env.meta, stage, _code("reason", command.reason))
    return customer.id


@handles(m.ChurnCustomer)
def churn(command: m.ChurnCustomer, env: Env) -> UUID:
    customer = _target(command, env)
    customer.churn(env.meta, _code("reason", command.reason))
    return customer.id


@handles(m.ReactivateCustomer)
def reactivate(command: m.ReactivateCustomer, env: Env) -> UUID:
    customer = _target(command, env)
    customer.reactivate(env.meta, _code("reason", command.reason))
    return customer.id


@handles(m.MergeCustomers)
def merge_customers(command: m.MergeCustomers, env: Env) -> UUID:
    survivor = _target(command, env)
    duplicate = env.uow.customer(command.duplicate_id)
    for owner in merge(survivor, duplicate, env.meta):
        env.uow.data_copies(owner).add(survivor.id)
    if duplicate.email is not None:
        env.uow.email_reservation(duplicate.email).release(duplicate.id)
        if survivor.email == duplicate.email:
            env.uow.email_reservation(survivor.email).reserve(survivor.id, survivor.email)
    return survivor.id


@handles(m.UnmergeCustomers)
def unmerge_customers(command: m.UnmergeCustomers, env: Env) -> UUID:
    survivor = _target(command, env)
    duplicate = env.uow.customer(command.duplicate_id)
    survivor_email = survivor.email
    for owner in unmerge(survivor, duplicate, env.meta):
        env.uow.data_copies(owner).add(survivor.id)
    if survivor_email is not None and survivor.email != survivor_email:
        env.uow.email_reservation(survivor_email).release(survivor.id)
    if duplicate.email is not None:
        env.uow.email_reservation(duplicate.email).reserve(duplicate.id, duplicate.email)
    return survivor.id


@handles(m.EraseCustomer)
def erase_customer(command: m.EraseCustomer, env: Env) -> UUID:
    customer = _target(command, env)
    email = customer.email
    reason = _code("reason", command.reason)
    erase(customer, env.uow.customer, env.uow.copies_of, env.meta, reason)
    if email is not None:
        env.uow.email_reservation(email).release(customer.id)
    return customer.id


_POINTS = {
    m.EarnPoints: Customer.earn_points,
    m.RedeemPoints: Customer.redeem_points,
    m.ExpirePoints: Customer.expire_points,
}


def points(command: m.EarnPoints | m.RedeemPoints | m.ExpirePoints, env: Env) -> UUID:
    v.check_score("points", command.points, 1, v.MAX_SAFE_INTEGER)
    reason = _code("reason", command.reason)
    customer = _target(command, env)
    _POINTS[type(command)](customer, env.meta, command.points, reason)
    return customer.id


for _points_command in _POINTS:
    HANDLERS[_points_command] = points


@handles(m.ChangeTier)
def change_tier(command: m.ChangeTier, env: Env) -> UUID:
    tier = v.normalise_tag(command.tier, "tier")
    customer = _target(command, env)
    customer.change_tier(env.meta, tier)
    return customer.id
