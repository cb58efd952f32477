"""Loyalty events of a customer: points earned, redeemed, expired and revoked, tier changes.
Stored under their historical topics (``TOPIC``: ``domain.events:<class>``), which
:mod:`domain.events` resolves."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain.customer_event import CustomerEvent

if TYPE_CHECKING:
    from domain.customer import Customer


class PointsEarned(CustomerEvent):
    """A lot of points (:mod:`domain.points`). Version 2 added ``order_id`` (the purchase
    that earned them) and ``expires_at`` (None: never); v1 events are upcast to neither."""

    TYPE = "customer.points_earned"
    TOPIC = "domain.events:PointsEarned"
    class_version = 2
    points: int
    reason: str | None
    order_id: str | None
    expires_at: datetime | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state.setdefault("order_id", None)
        state.setdefault("expires_at", None)

    def apply(self, aggregate: Customer) -> None:
        aggregate.points += self.points


class PointsRedeemed(CustomerEvent):
    TYPE = "customer.points_redeemed"
    TOPIC = "domain.events:PointsRedeemed"
    points: int
    reason: str | None

    def apply(self, aggregate: Customer) -> None:
        aggregate.points -= self.points


class PointsExpired(PointsRedeemed):
    """Points lost to expiry: the balance falls exactly as for a redemption."""

    TYPE = "customer.points_expired"
    TOPIC = "domain.events:PointsExpired"


class PointsRevoked(PointsRedeemed):
    """Points an order earned, taken back because it was refunded (at most the balance)."""

    TYPE = "customer.points_revoked"
    TOPIC = "domain.events:PointsRevoked"
    order_id: str


class TierChanged(CustomerEvent):
    """Version 2 added ``reason`` and ``spend`` (the spend per currency that decided an
    automatic change; None for a manual one); v1 events are upcast to neither."""

    TYPE = "customer.tier_changed"
    TOPIC = "domain.events:TierChanged"
    class_version = 2
    tier: str
    previous_tier: str | None
    reason: str | None
    spend: dict[str, str] | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state.setdefault("reason", None)
        state.setdefault("spend", None)

    def apply(self, aggregate: Customer) -> None:
        aggregate.tier = self.tier
