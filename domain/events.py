"""Customer events: the immutable facts, and how each one changes a :class:`Customer`.

Every event carries who caused it, why and when (:class:`domain.event_base.LoggedEvent`).
Each class has a dotted ``TYPE`` from the Kafka contract and a ``class_version`` for upcasting;
its personal fields carry a :class:`domain.personal.Personal` marker. Every event is stored
with its topic, ``domain.events:<class>``, so every class is reachable here: most are defined
here, the loyalty and campaign events in :mod:`domain.loyalty_events` and
:mod:`domain.campaign_events` (their ``TOPIC`` keeps the ``domain.events:`` topic, resolved
through the imports here); the base class is :mod:`domain.customer_event`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from eventsourcing.domain import Aggregate

from domain.campaign_events import CampaignOutcomeRecorded, CampaignTargeted
from domain.customer_event import CustomerEvent
from domain.loyalty_events import (
    PointsEarned,
    PointsExpired,
    PointsRedeemed,
    PointsRevoked,
    TierChanged,
)
from domain.personal import Personal, personal_fields, redacted
from domain.values import LifecycleStage, Status

if TYPE_CHECKING:
    from domain.customer import Customer


# The imported classes are exported: stored events name them ``domain.events:<class>``.
__all__ = [
    "CampaignOutcomeRecorded",
    "CampaignTargeted",
    "CustomerEvent",
    "PointsEarned",
    "PointsExpired",
    "PointsRedeemed",
    "PointsRevoked",
    "TierChanged",
]


class Registered(CustomerEvent, Aggregate.Created):
    """Version 2 added ``source`` and ``lifecycle_stage``, version 3 ``external_ids``
    (``{system: id}``, personal: sealed like the email); older events are upcast on load.
    Its ``occurred_at`` is the registration's business time (given by the caller, or now)."""

    TYPE = "customer.registered"
    class_version = 3
    name: Annotated[str, Personal.TEXT]
    email: Annotated[str | None, Personal.TEXT]
    phone: Annotated[str | None, Personal.TEXT]
    attributes: Annotated[dict[str, Any], Personal.MAP]
    source: str | None
    lifecycle_stage: str
    external_ids: Annotated[dict[str, str], Personal.IDS]

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state.setdefault("source", None)
        state.setdefault("lifecycle_stage", LifecycleStage.PROSPECT.value)

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        state.setdefault("external_ids", {})

    def apply(self, aggregate: Customer) -> None:
        aggregate.initialise(self)


class ProfileUpdated(CustomerEvent):
    """``changes`` maps name/email/phone to new values; ``attributes`` and ``external_ids``
    are patches (None = drop). Version 2 added ``external_ids`` (upcast: none changed)."""

    TYPE = "customer.profile_updated"
    class_version = 2
    changes: Annotated[dict[str, Any], Personal.MAP]
    attributes: Annotated[dict[str, Any], Personal.MAP]
    external_ids: Annotated[dict[str, str | None], Personal.IDS]

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state.setdefault("external_ids", {})

    def apply(self, aggregate: Customer) -> None:
        for field, value in self.changes.items():
            setattr(aggregate, field, value)
        patch_map(aggregate.attributes, self.attributes)
        patch_map(aggregate.external_ids, self.external_ids)


def patch_map(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Apply a map patch in place: a ``None`` value removes the key, any other sets it."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value


class Contacted(CustomerEvent):
    TYPE = "customer.contacted"
    channel: str
    direction: str
    kind: str
    subject: Annotated[str | None, Personal.TEXT]
    summary: Annotated[str | None, Personal.TEXT]
    outcome: Annotated[str | None, Personal.TEXT]

    def apply(self, aggregate: Customer) -> None:
        aggregate.contacts_count += 1
        if aggregate.last_contact_at is None or self.occurred_at > aggregate.last_contact_at:
            aggregate.last_contact_at = self.occurred_at


class Tagged(CustomerEvent):
    TYPE = "customer.tagged"
    tag: str

    def apply(self, aggregate: Customer) -> None:
        aggregate.tags.append(self.tag)


class Untagged(CustomerEvent):
    TYPE = "customer.untagged"
    tag: str

    def apply(self, aggregate: Customer) -> None:
        aggregate.tags.remove(self.tag)


class PurchaseRecorded(CustomerEvent):
    TYPE = "customer.purchase_recorded"
    order_id: str
    amount: Decimal
    currency: str
    items: list[dict[str, Any]]

    def apply(self, aggregate: Customer) -> None:
        aggregate.purchases[self.order_id] = {
            "amount": self.amount,
            "currency": self.currency,
            "occurred_at": self.occurred_at,
        }


class PurchaseRefunded(CustomerEvent):
    """A recorded order was refunded or cancelled: it no longer counts as a purchase (its
    ``amount`` and ``currency`` are the order's, repeated for consumers)."""

    TYPE = "customer.purchase_refunded"
    order_id: str
    amount: Decimal
    currency: str
    reason: str | None

    def apply(self, aggregate: Customer) -> None:
        order = aggregate.purchases.pop(self.order_id)
        aggregate.refunded[self.order_id] = {**order, "refunded_at": self.occurred_at}


class FeedbackRecorded(CustomerEvent):
    TYPE = "customer.feedback_recorded"
    nps: int | None
    csat: int | None
    comment: Annotated[str | None, Personal.TEXT]

    def apply(self, aggregate: Customer) -> None:
        if self.nps is not None:
            aggregate.nps = self.nps
        if self.csat is not None:
            aggregate.csat = self.csat


class ConsentGranted(CustomerEvent):
    TYPE = "customer.consent_granted"
    purpose: str
    source: str | None

    def apply(self, aggregate: Customer) -> None:
        aggregate.consents[self.purpose] = True


class ConsentWithdrawn(CustomerEvent):
    TYPE = "customer.consent_withdrawn"
    purpose: str
    source: str | None

    def apply(self, aggregate: Customer) -> None:
        aggregate.consents[self.purpose] = False


class LifecycleStageChanged(CustomerEvent):
    TYPE = "customer.lifecycle_stage_changed"
    stage: str
    previous_stage: str
    reason: str | None

    def apply(self, aggregate: Customer) -> None:
        aggregate.lifecycle_stage = self.stage


class Churned(CustomerEvent):
    TYPE = "customer.churned"
    reason: str | None
    previous_stage: str

    def apply(self, aggregate: Customer) -> None:
        aggregate.status = Status.CHURNED.value
        aggregate.lifecycle_stage = LifecycleStage.CHURNED.value
        aggregate.churn_reason = self.reason


class Reactivated(CustomerEvent):
    TYPE = "customer.reactivated"
    reason: str | None

    def apply(self, aggregate: Customer) -> None:
        aggregate.status = Status.ACTIVE.value
        aggregate.lifecycle_stage = LifecycleStage.ACTIVE.value
        aggregate.churn_reason = None


class MergedInto(CustomerEvent):
    """This customer was a duplicate; ``survivor_id`` lives on."""

    TYPE = "customer.merged_into"
    survivor_id: str

    def apply(self, aggregate: Customer) -> None:
        aggregate.status_before_merge = aggregate.status
        aggregate.status = Status.MERGED.value
        aggregate.merged_into = self.survivor_id


def moved_fields(data: Mapping[str, Any]) -> list[str]:
    """Which of email/phone a merge part moves (or an unmerge part gives back): named in clear
    in ``moved``, so folds never depend on values that read null once their owner is erased;
    for v1 events, the fields that hold a value (their survivor's key sealed them)."""
    moved = data.get("moved")
    if moved is not None:
        return list(moved)
    return [field for field in DuplicateAbsorbed.PERSONAL if data.get(field) is not None]


class _Moving(CustomerEvent):
    """What moves between a survivor and a duplicate, in ``parts`` events (``part`` =
    1…parts) so that no event outgrows :data:`MAX_EVENT_BYTES`: part 1 carries tags and the
    contact count, every part a share of the purchases; the email/phone (``moved`` names which)
    ride in parts whose ``data_owner`` is the person they belong to (the duplicate, or whom it
    had absorbed them from) and are sealed with THAT person's key, so erasing that person
    later (after an unmerge) reaches this copy. Parts add up: consumers fold each as it comes.

    Version 2 added ``part``, ``parts``, ``data_owner`` and ``moved``; v1 events (one part,
    sealed with the survivor's own key) are upcast on load.
    """

    KEY_OWNER = "data_owner"
    class_version = 2
    tags: list[str]
    purchases: dict[str, dict[str, Any]]
    contacts_count: int
    email: Annotated[str | None, Personal.TEXT]
    phone: Annotated[str | None, Personal.TEXT]
    part: int
    parts: int
    data_owner: str | None
    moved: list[str] | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state.update({"part": 1, "parts": 1, "data_owner": None, "moved": None} | state)


class DuplicateAbsorbed(_Moving):
    """What the survivor took over from the duplicate, so an unmerge can give it back."""

    TYPE = "customer.duplicate_absorbed"
    duplicate_id: str

    def apply(self, aggregate: Customer) -> None:
        aggregate.tags.extend(self.tags)
        aggregate.purchases.update(self.purchases)
        aggregate.contacts_count += self.contacts_count
        known = aggregate.absorbed.get(self.duplicate_id)
        if known is None or self.part == 1:
            known = {"duplicate_id": self.duplicate_id, "tags": [], "purchases": {}}
            known |= {"contacts_count": 0, **dict.fromkeys(self.PERSONAL)}
            known["merged_at"] = self.occurred_at
        record = {
            **known,
            "tags": [*known["tags"], *self.tags],
            "purchases": {**known["purchases"], **self.purchases},
            "contacts_count": known["contacts_count"] + self.contacts_count,
        }
        for field in moved_fields(vars(self)):
            setattr(aggregate, field, getattr(self, field))
            record[field] = getattr(self, field)
            record[f"{field}_owner"] = self.data_owner
        aggregate.absorbed[self.duplicate_id] = record


class Unmerged(_Moving):
    """Undo of a merge, recorded on both sides (``role`` says which side this one is).

    On the survivor it lists exactly what is given back, so consumers need no memory of the
    merge: tags, purchases, contact count, and email/phone where the survivor had taken them.
    Consents are never given back or taken (README, "The model").
    """

    TYPE = "customer.unmerged"
    other_id: str
    role: str

    def apply(self, aggregate: Customer) -> None:
        if self.role == "duplicate":
            aggregate.status = aggregate.status_before_merge or Status.ACTIVE.value
            aggregate.status_before_merge = None
            aggregate.merged_into = None
            return
        aggregate.absorbed.pop(self.other_id, None)
        aggregate.tags = [t for t in aggregate.tags if t not in self.tags]
        for order_id in self.purchases:
            del aggregate.purchases[order_id]
        aggregate.contacts_count -= self.contacts_count
        for field in moved_fields(vars(self)):
            setattr(aggregate, field, None)


class Erased(CustomerEvent):
    """Right to erasure: personal data is gone from here on; facts without PII stay.

    ``copies_at`` names the customers whose streams hold this person's data sealed with their
    key (what merges moved): their snapshots and read-model copies go too. Version 2 added it
    (upcast: none).
    """

    TYPE = "customer.erased"
    class_version = 2
    reason: str | None
    copies_at: list[str]

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state.setdefault("copies_at", [])

    def apply(self, aggregate: Customer) -> None:
        aggregate.status = Status.ERASED.value
        for field, shape in aggregate.PERSONAL.items():
            setattr(aggregate, field, redacted(shape))


EVENT_CLASSES: tuple[type[CustomerEvent], ...] = (
    Registered,
    ProfileUpdated,
    Contacted,
    Tagged,
    Untagged,
    PurchaseRecorded,
    PurchaseRefunded,
    FeedbackRecorded,
    ConsentGranted,
    ConsentWithdrawn,
    LifecycleStageChanged,
    Churned,
    Reactivated,
    MergedInto,
    DuplicateAbsorbed,
    Unmerged,
    Erased,
    PointsEarned,
    PointsRedeemed,
    PointsExpired,
    PointsRevoked,
    TierChanged,
    CampaignTargeted,
    CampaignOutcomeRecorded,
)
EVENT_TYPES: dict[str, type[CustomerEvent]] = {cls.TYPE: cls for cls in EVENT_CLASSES}
for _cls in EVENT_CLASSES:
    _cls.PERSONAL = personal_fields(_cls)
PERSONAL_FIELDS: dict[str, Personal] = {
    field: shape for cls in EVENT_CLASSES for field, shape in cls.PERSONAL.items()
}
"""Every personal field of every customer event, by name (a name has one shape everywhere)."""
