"""The Customer aggregate: decides which events a command produces, and folds them into state.

Command methods validate first and trigger events only when everything holds, so a rejected
command never leaves half of its events behind.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain import events as ev
from domain.customer_campaigns import CampaignDecisions
from domain.customer_loyalty import LoyaltyDecisions
from domain.errors import (
    CustomerErased,
    CustomerMerged,
    InvalidInput,
    InvalidTransition,
    LimitExceeded,
    PurchaseConflict,
)
from domain.event_base import Meta
from domain.external_ids import MAX_EXTERNAL_IDS
from domain.personal import Personal
from domain.values import MAX_TAGS_PER_CUSTOMER, LifecycleStage, Status


class Customer(LoyaltyDecisions, CampaignDecisions, Aggregate):
    """A customer record: profile, external ids, contacts, purchases, feedback, consents, tags,
    lifecycle; its loyalty decisions are in :mod:`domain.customer_loyalty`, its campaign
    decisions in :mod:`domain.customer_campaigns`.

    ``registered_at`` is the registration's business time: no event of the customer may be
    dated before it (:meth:`trigger_event`). Version 2 (issue 14) added it and
    ``external_ids``, version 3 (issue 18) ``refunded`` (refunded orders, by order id, out of
    ``purchases``), version 4 (issue 19) ``campaigns`` (campaign id -> ``{group, at, purpose, channel}``) and
    ``invalid_channels`` (hard-bounced); older
    snapshots are upcast on load.
    """

    PERSONAL: ClassVar[dict[str, Personal]] = {**ev.Registered.PERSONAL, "absorbed": Personal.MAP}
    """What a snapshot seals: the profile's personal fields (as registered) and, per absorbed
    duplicate, the email/phone a merge moved (:class:`domain.events.DuplicateAbsorbed`)."""
    class_version = 4

    name: str | None
    email: str | None
    phone: str | None
    attributes: dict[str, Any]
    external_ids: dict[str, str]
    registered_at: datetime
    source: str | None
    tags: list[str]
    consents: dict[str, bool]
    lifecycle_stage: str
    status: str
    status_before_merge: str | None
    churn_reason: str | None
    purchases: dict[str, dict[str, Any]]
    refunded: dict[str, dict[str, Any]]
    contacts_count: int
    last_contact_at: datetime | None
    nps: int | None
    csat: int | None
    merged_into: str | None
    absorbed: dict[str, dict[str, Any]]
    points: int
    tier: str | None
    campaigns: dict[str, dict[str, str]]
    invalid_channels: list[str]

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
        external_ids: dict[str, str] | None = None,
    ) -> Customer:
        """Register a new customer (values must already be normalised; the external ids
        reserved by the caller)."""
        if lifecycle_stage == LifecycleStage.CHURNED:
            raise InvalidInput("lifecycle_stage", "a customer cannot be registered as churned")
        return cls._create(
            ev.Registered,
            id=customer_id,
            name=name,
            email=email,
            phone=phone,
            attributes={k: v for k, v in (attributes or {}).items() if v is not None},
            external_ids=dict(external_ids or {}),
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
        self.external_ids = dict(event.external_ids)
        self.registered_at = event.occurred_at
        self.source = event.source
        self.tags = []
        self.consents = {}
        self.lifecycle_stage = event.lifecycle_stage
        self.status = Status.ACTIVE.value
        self.status_before_merge = None
        self.churn_reason = None
        self.purchases = {}
        self.refunded = {}
        self.contacts_count = 0
        self.last_contact_at = None
        self.nps = None
        self.csat = None
        self.merged_into = None
        self.absorbed = {}
        self.points = 0
        self.tier = None
        self.campaigns = {}
        self.invalid_channels = []

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Snapshots taken before external ids and business-time registration: none held, and
        the registration happened when it was recorded (its business time was then "now")."""
        state.setdefault("external_ids", {})
        state.setdefault("registered_at", state["_created_on"])

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """Snapshots taken before refunds existed: none refunded."""
        state.setdefault("refunded", {})

    @staticmethod
    def upcast_v3_v4(state: dict[str, Any]) -> None:
        """Snapshots taken before campaigns existed: in none, no channel invalid."""
        state.setdefault("campaigns", {})
        state.setdefault("invalid_channels", [])

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        """Every event after the registration: never dated before it (README, "Business
        time"), so a view of the customer as of any date shows them from registration on."""
        occurred_at = kwargs.get("occurred_at")
        if isinstance(occurred_at, datetime) and occurred_at < self.registered_at:
            raise InvalidInput(
                "occurred_at",
                f"{occurred_at.isoformat()} is before the customer's registration "
                f"({self.registered_at.isoformat()})",
            )
        super().trigger_event(event_class, **kwargs)

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
        self,
        meta: Meta,
        changes: dict[str, Any],
        attributes: dict[str, Any],
        external_ids: dict[str, str | None] | None = None,
    ) -> bool:
        """Change name/email/phone and patch attributes and external ids (``None`` removes);
        returns False when nothing changes. The caller keeps the external-id index in step."""
        self._require_not_churned("update")
        if "name" in changes and changes["name"] is None:
            raise InvalidInput("name", "is required")
        real = {k: v for k, v in changes.items() if getattr(self, k) != v}
        patch = {k: v for k, v in attributes.items() if self.attributes.get(k) != v}
        ids = {k: v for k, v in (external_ids or {}).items() if self.external_ids.get(k) != v}
        if not real and not patch and not ids:
            return False
        if len(self.external_ids | ids) - list(ids.values()).count(None) > MAX_EXTERNAL_IDS:
            raise LimitExceeded(f"a customer can have at most {MAX_EXTERNAL_IDS} external ids")
        self.trigger_event(
            ev.ProfileUpdated, changes=real, attributes=patch, external_ids=ids, **meta.fields()
        )
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
        known = self.purchases.get(order_id) or self.refunded.get(order_id)
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

    def refund_purchase(self, meta: Meta, *, order_id: str, reason: str | None) -> bool:
        """Refund (or cancel) a recorded order: it stops counting as a purchase. An order
        already refunded is a no-op (returns False); an unknown one is :class:`InvalidInput`
        naming ``order_id``."""
        self.require_live()
        if order_id in self.refunded:
            return False
        order = self.purchases.get(order_id)
        if order is None:
            raise InvalidInput("order_id", f"no order {order_id!r} was recorded for {self.id}")
        if self.registered_at <= meta.occurred_at < order["occurred_at"]:
            raise InvalidInput("occurred_at", f"is before order {order_id} was placed")
        self.trigger_event(
            ev.PurchaseRefunded,
            order_id=order_id,
            amount=order["amount"],
            currency=order["currency"],
            reason=reason,
            **meta.fields(),
        )
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

    # ------------------------------------------------------------------- reads

    def purchase_totals(self) -> dict[str, Decimal]:
        """Sum of purchase amounts per currency."""
        totals: dict[str, Decimal] = {}
        for purchase in self.purchases.values():
            currency = purchase["currency"]
            totals[currency] = totals.get(currency, Decimal(0)) + purchase["amount"]
        return totals
