"""The Customer aggregate: decides which events a command produces, and folds them into state.

Command methods validate first and trigger events only when everything holds, so a rejected
command never leaves half of its events behind.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain import events as ev
from domain.errors import (
    CustomerErased,
    CustomerMerged,
    InvalidInput,
    InvalidTransition,
    LimitExceeded,
    PurchaseConflict,
)
from domain.events import Meta
from domain.values import MAX_TAGS_PER_CUSTOMER, LifecycleStage, Status

MERGE_SOURCE_PREFIX = "merge:"
"""Source of the consent changes a merge records: ``merge:<duplicate id>``."""


class Customer(Aggregate):
    """A customer record: profile, contacts, purchases, feedback, consents, tags, lifecycle."""

    PERSONAL: ClassVar[tuple[str, ...]] = ("name", "email", "phone", "attributes", "absorbed")

    name: str | None
    email: str | None
    phone: str | None
    attributes: dict[str, Any]
    source: str | None
    tags: list[str]
    consents: dict[str, bool]
    lifecycle_stage: str
    status: str
    status_before_merge: str | None
    churn_reason: str | None
    purchases: dict[str, dict[str, Any]]
    contacts_count: int
    last_contact_at: datetime | None
    nps: int | None
    csat: int | None
    merged_into: str | None
    absorbed: dict[str, dict[str, Any]]
    points: int
    tier: str | None

    def __init__(self) -> None:
        """State is set by :meth:`initialise`, called from the Registered event."""

    # ----------------------------------------------------------------- creation

    @classmethod
    def register(
        cls,
        customer_id: UUID,
        meta: Meta,
        *,
        name: str,
        email: str | None = None,
        phone: str | None = None,
        attributes: dict[str, Any] | None = None,
        source: str | None = None,
        lifecycle_stage: LifecycleStage = LifecycleStage.PROSPECT,
    ) -> Customer:
        """Register a new customer (values must already be normalised)."""
        if lifecycle_stage == LifecycleStage.CHURNED:
            raise InvalidInput("lifecycle_stage", "a customer cannot be registered as churned")
        return cls._create(
            ev.Registered,
            id=customer_id,
            name=name,
            email=email,
            phone=phone,
            attributes={k: v for k, v in (attributes or {}).items() if v is not None},
            source=source,
            lifecycle_stage=lifecycle_stage.value,
            **meta.fields(),
        )

    def initialise(self, event: ev.Registered) -> None:
        """State right after registration (called by the Registered event)."""
        self.name = event.name
        self.email = event.email
        self.phone = event.phone
        self.attributes = dict(event.attributes)
        self.source = event.source
        self.tags = []
        self.consents = {}
        self.lifecycle_stage = event.lifecycle_stage
        self.status = Status.ACTIVE.value
        self.status_before_merge = None
        self.churn_reason = None
        self.purchases = {}
        self.contacts_count = 0
        self.last_contact_at = None
        self.nps = None
        self.csat = None
        self.merged_into = None
        self.absorbed = {}
        self.points = 0
        self.tier = None

    # ------------------------------------------------------------------ guards

    @property
    def is_live(self) -> bool:
        return self.status in (Status.ACTIVE, Status.CHURNED)

    def require_live(self) -> None:
        """Erased and merged customers reject every further command."""
        if self.status == Status.ERASED:
            raise CustomerErased(self.id)
        if self.status == Status.MERGED:
            assert self.merged_into is not None
            raise CustomerMerged(self.id, UUID(self.merged_into))

    def _require_not_churned(self, action: str) -> None:
        self.require_live()
        if self.status == Status.CHURNED:
            raise InvalidTransition(
                f"cannot {action} churned customer {self.id}; reactivate first",
                customer_id=str(self.id),
            )

    # ---------------------------------------------------------------- commands

    def update_profile(
        self, meta: Meta, changes: dict[str, Any], attributes: dict[str, Any]
    ) -> bool:
        """Change name/email/phone and patch attributes; returns False when nothing changes."""
        self._require_not_churned("update")
        if "name" in changes and changes["name"] is None:
            raise InvalidInput("name", "is required")
        real = {k: v for k, v in changes.items() if getattr(self, k) != v}
        patch = {k: v for k, v in attributes.items() if self.attributes.get(k) != v}
        if not real and not patch:
            return False
        self.trigger_event(ev.ProfileUpdated, changes=real, attributes=patch, **meta.fields())
        return True

    def record_contact(
        self,
        meta: Meta,
        *,
        channel: str,
        direction: str,
        kind: str,
        subject: str | None,
        summary: str | None,
        outcome: str | None,
    ) -> None:
        self.require_live()
        self.trigger_event(
            ev.Contacted,
            channel=channel,
            direction=direction,
            kind=kind,
            subject=subject,
            summary=summary,
            outcome=outcome,
            **meta.fields(),
        )

    def tag(self, meta: Meta, tag: str) -> bool:
        """Add a (normalised) tag; returns False when already present."""
        self._require_not_churned("tag")
        if tag in self.tags:
            return False
        if len(self.tags) >= MAX_TAGS_PER_CUSTOMER:
            raise LimitExceeded(f"a customer can have at most {MAX_TAGS_PER_CUSTOMER} tags")
        self.trigger_event(ev.Tagged, tag=tag, **meta.fields())
        return True

    def untag(self, meta: Meta, tag: str) -> bool:
        """Remove a tag; returns False when it was not there."""
        self._require_not_churned("untag")
        if tag not in self.tags:
            return False
        self.trigger_event(ev.Untagged, tag=tag, **meta.fields())
        return True

    def record_purchase(
        self,
        meta: Meta,
        *,
        order_id: str,
        amount: Decimal,
        currency: str,
        items: list[dict[str, Any]],
    ) -> bool:
        """Record an order once; a churned customer is reactivated by it (two events).

        The same order again is a no-op (returns False); the same order id with another
        amount or currency is a :class:`PurchaseConflict`. A prospect's first purchase makes
        them ``new``.
        """
        self.require_live()
        known = self.purchases.get(order_id)
        if known is not None:
            if known["amount"] == amount and known["currency"] == currency:
                return False
            raise PurchaseConflict(
                f"order {order_id} was recorded as {known['amount']} {known['currency']}",
                order_id=order_id,
            )
        self.trigger_event(
            ev.PurchaseRecorded,
            order_id=order_id,
            amount=amount,
            currency=currency,
            items=items,
            **meta.fields(),
        )
        if self.status == Status.CHURNED:
            self.trigger_event(ev.Reactivated, reason="purchase", **meta.fields())
        elif self.lifecycle_stage == LifecycleStage.PROSPECT:
            self._change_stage(meta, LifecycleStage.NEW, "first_purchase")
        return True

    def record_feedback(
        self, meta: Meta, *, nps: int | None, csat: int | None, comment: str | None
    ) -> None:
        """Record NPS and/or CSAT (churned customers too: exit surveys matter)."""
        self.require_live()
        if nps is None and csat is None and comment is None:
            raise InvalidInput("feedback", "needs at least one of nps, csat, comment")
        self.trigger_event(
            ev.FeedbackRecorded, nps=nps, csat=csat, comment=comment, **meta.fields()
        )

    def set_consent(self, meta: Meta, purpose: str, granted: bool, source: str | None) -> bool:
        """Grant or withdraw consent for a purpose; returns False when unchanged.

        Allowed for churned customers too: withdrawing consent must always be possible.
        """
        self.require_live()
        if self.consents.get(purpose) is granted:
            return False
        event = ev.ConsentGranted if granted else ev.ConsentWithdrawn
        self.trigger_event(event, purpose=purpose, source=source, **meta.fields())
        return True

    def change_stage(self, meta: Meta, stage: LifecycleStage, reason: str | None) -> bool:
        """Move to another lifecycle stage; churning goes through :meth:`churn`."""
        self._require_not_churned("change the lifecycle stage of")
        if stage == LifecycleStage.CHURNED:
            raise InvalidTransition("use the churn command to churn a customer")
        if stage == self.lifecycle_stage:
            return False
        self._change_stage(meta, stage, reason)
        return True

    def _change_stage(self, meta: Meta, stage: LifecycleStage, reason: str | None) -> None:
        self.trigger_event(
            ev.LifecycleStageChanged,
            stage=stage.value,
            previous_stage=self.lifecycle_stage,
            reason=reason,
            **meta.fields(),
        )

    def churn(self, meta: Meta, reason: str | None) -> None:
        self._require_not_churned("churn")
        self.trigger_event(
            ev.Churned, reason=reason, previous_stage=self.lifecycle_stage, **meta.fields()
        )

    def reactivate(self, meta: Meta, reason: str | None) -> None:
        self.require_live()
        if self.status != Status.CHURNED:
            raise InvalidTransition(f"customer {self.id} is not churned")
        self.trigger_event(ev.Reactivated, reason=reason, **meta.fields())

    def earn_points(self, meta: Meta, points: int, reason: str | None) -> None:
        self.require_live()
        _check_points(points)
        self.trigger_event(ev.PointsEarned, points=points, reason=reason, **meta.fields())

    def redeem_points(self, meta: Meta, points: int, reason: str | None) -> None:
        self._require_not_churned("redeem points of")
        _check_points(points)
        if points > self.points:
            raise InvalidTransition(f"cannot redeem {points} points, balance is {self.points}")
        self.trigger_event(ev.PointsRedeemed, points=points, reason=reason, **meta.fields())

    def expire_points(self, meta: Meta, points: int, reason: str | None) -> None:
        self.require_live()
        _check_points(points)
        expiring = min(points, self.points)
        if expiring:
            self.trigger_event(ev.PointsExpired, points=expiring, reason=reason, **meta.fields())

    def change_tier(self, meta: Meta, tier: str) -> bool:
        self.require_live()
        if tier == self.tier:
            return False
        self.trigger_event(ev.TierChanged, tier=tier, previous_tier=self.tier, **meta.fields())
        return True

    # ------------------------------------------------------------------- reads

    def purchase_totals(self) -> dict[str, Decimal]:
        """Sum of purchase amounts per currency."""
        totals: dict[str, Decimal] = {}
        for purchase in self.purchases.values():
            currency = purchase["currency"]
            totals[currency] = totals.get(currency, Decimal(0)) + purchase["amount"]
        return totals


def _check_points(points: int) -> None:
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise InvalidInput("points", "must be a positive integer")


PURCHASES_PER_PART = 500
"""Purchases per ``duplicate_absorbed`` / ``unmerged`` part: even with 100-character order ids
of 6-byte escapes a part stays far below :data:`domain.events.MAX_EVENT_BYTES`."""

Moved = dict[str, tuple[str, str]]  # personal field -> (value, id of the person it belongs to)


def _shares(purchases: dict[str, dict[str, Any]]) -> list[dict[str, dict[str, Any]]]:
    """``purchases`` in order, cut into shares of :data:`PURCHASES_PER_PART`."""
    items = list(purchases.items())
    cuts = range(0, len(items), PURCHASES_PER_PART)
    return [dict(items[start : start + PURCHASES_PER_PART]) for start in cuts]


def _in_parts(
    survivor: Customer,
    event_class: type[ev.DuplicateAbsorbed | ev.Unmerged],
    meta: Meta,
    *,
    purchases: dict[str, dict[str, Any]],
    personal: Moved,
    tags: list[str],
    contacts_count: int,
    **fields: Any,
) -> set[UUID]:
    """Record what moves between survivor and duplicate as ``parts`` events: shares of the
    purchases, personal values grouped by the person they belong to (each part's are sealed
    with one key), tags and contact count on part 1. Returns the owners of personal values."""
    groups: dict[str, dict[str, str]] = {}
    for field, (value, person) in personal.items():
        groups.setdefault(person, {})[field] = value
    owned: list[tuple[str | None, dict[str, str]]] = list(groups.items())
    shares = _shares(purchases)
    parts = max(len(shares), len(owned), 1)
    for index in range(parts):
        owner, values = owned[index] if index < len(owned) else (None, {})
        survivor.trigger_event(
            event_class,
            purchases=shares[index] if index < len(shares) else {},
            email=values.get("email"),
            phone=values.get("phone"),
            data_owner=owner,
            part=index + 1,
            parts=parts,
            tags=tags if index == 0 else [],
            contacts_count=contacts_count if index == 0 else 0,
            **fields,
            **meta.fields(),
        )
    return {UUID(owner) for owner in groups}


def _origin(customer: Customer, field: str) -> str:
    """Whom the customer's current email/phone belongs to: the person a merge took it from
    (as recorded when it was absorbed), else the customer."""
    value = getattr(customer, field)
    for record in customer.absorbed.values():
        if record.get(field) == value and record.get(f"{field}_owner"):
            return str(record[f"{field}_owner"])
    return str(customer.id)


def merge(survivor: Customer, duplicate: Customer, meta: Meta) -> set[UUID]:
    """Merge ``duplicate`` into ``survivor``; the survivor's id lives on.

    The survivor takes over the duplicate's tags (within the tag limit), purchases it does not
    have, its contact count, and email/phone where it has none (sealed with the key of the
    person they belong to: the duplicate, or whom it took them from). A merge never widens
    consent: for every purpose the duplicate withdrew, the survivor withdraws too
    (``consent_withdrawn`` with source ``merge:<duplicate id>``, recorded BEFORE anything moves,
    so the survivor never holds the duplicate's contact data with a consent the person took
    back); a grant of the duplicate alone is not taken over. What moves is recorded in
    ``duplicate_absorbed`` parts. Returns whose personal data the survivor's stream now holds.
    """
    if survivor.id == duplicate.id:
        raise InvalidInput("duplicate_id", "a customer cannot be merged into itself")
    survivor.require_live()
    duplicate.require_live()
    room = MAX_TAGS_PER_CUSTOMER - len(survivor.tags)
    new_tags = [t for t in duplicate.tags if t not in survivor.tags][: max(room, 0)]
    new_purchases = {
        order_id: dict(p)
        for order_id, p in duplicate.purchases.items()
        if order_id not in survivor.purchases
    }
    source = f"{MERGE_SOURCE_PREFIX}{duplicate.id}"
    for purpose, granted in sorted(duplicate.consents.items()):
        if not granted and survivor.consents.get(purpose) is not False:
            survivor.trigger_event(
                ev.ConsentWithdrawn, purpose=purpose, source=source, **meta.fields()
            )
    moved: Moved = {
        field: (getattr(duplicate, field), _origin(duplicate, field))
        for field in ("email", "phone")
        if getattr(survivor, field) is None and getattr(duplicate, field) is not None
    }
    owners = _in_parts(
        survivor,
        ev.DuplicateAbsorbed,
        meta,
        purchases=new_purchases,
        personal=moved,
        tags=new_tags,
        contacts_count=duplicate.contacts_count,
        duplicate_id=str(duplicate.id),
    )
    duplicate.trigger_event(ev.MergedInto, survivor_id=str(survivor.id), **meta.fields())
    return owners


def unmerge(survivor: Customer, duplicate: Customer, meta: Meta) -> set[UUID]:
    """Undo :func:`merge`: the survivor gives back exactly what it absorbed and still holds.

    Consents stay as they are on both sides: the duplicate never lost its own, and a withdrawal
    the merge carried over stays on the survivor until the person grants again (giving back a
    grant would widen processing without a decision of theirs). Returns whose personal data
    the survivor's stream now holds (what it gives back, sealed with the owners' keys).
    """
    if duplicate.status == Status.ERASED:
        raise CustomerErased(duplicate.id)
    if duplicate.status != Status.MERGED or duplicate.merged_into != str(survivor.id):
        raise InvalidTransition(f"customer {duplicate.id} is not merged into {survivor.id}")
    survivor.require_live()
    absorbed = survivor.absorbed[str(duplicate.id)]
    given_back: Moved = {
        field: (absorbed[field], absorbed.get(f"{field}_owner") or str(duplicate.id))
        for field in ("email", "phone")
        if absorbed[field] is not None and absorbed[field] == getattr(survivor, field)
    }
    owners = _in_parts(
        survivor,
        ev.Unmerged,
        meta,
        purchases={k: p for k, p in absorbed["purchases"].items() if k in survivor.purchases},
        personal=given_back,
        tags=[t for t in absorbed["tags"] if t in survivor.tags],
        contacts_count=absorbed["contacts_count"],
        other_id=str(duplicate.id),
        role="survivor",
    )
    duplicate.trigger_event(
        ev.Unmerged,
        other_id=str(survivor.id),
        role="duplicate",
        tags=[],
        purchases={},
        contacts_count=0,
        email=None,
        phone=None,
        part=1,
        parts=1,
        data_owner=None,
        **meta.fields(),
    )
    return owners


def erase(
    customer: Customer,
    load: Callable[[UUID], Customer],
    copies: Callable[[UUID], list[str]],
    meta: Meta,
    reason: str | None,
) -> list[Customer]:
    """Erase a person: ``customer`` and every duplicate merged into it, down merge chains.

    A merged duplicate is refused (:class:`CustomerMerged`; the edges name the final
    survivor): its data lives on in the survivor, so the person is erased there, which reaches
    every copy. ``load`` gives the customer of an id (the absorbed duplicates), ``copies`` the
    customers whose streams hold a person's data under their key (``copies_at``). Returns the
    customers erased, ``customer`` first; each gets its own ``customer.erased`` event (same
    actor, correlation id and reason), so each one's key is shredded.
    """
    customer.require_live()
    erased: list[Customer] = []
    todo = [customer]
    while todo:
        person = todo.pop(0)
        absorbed = sorted(person.absorbed)
        person.trigger_event(
            ev.Erased, reason=reason, copies_at=sorted(copies(person.id)), **meta.fields()
        )
        erased.append(person)
        for duplicate_id in absorbed:
            duplicate = load(UUID(duplicate_id))
            if duplicate.status == Status.MERGED and duplicate.merged_into == str(person.id):
                todo.append(duplicate)
    return erased
