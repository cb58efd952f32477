"""The Customer aggregate's loyalty decisions: points earned, redeemed, expired and revoked
(never below zero), and tier changes (:class:`domain.customer.Customer` inherits them)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain import loyalty_events as ev
from domain.errors import InsufficientPoints, InvalidInput
from domain.event_base import Meta

if TYPE_CHECKING:
    from uuid import UUID


class LoyaltyDecisions:
    """Points and tier commands of a customer; state is the aggregate's (``points``,
    ``tier``), folded by the loyalty events."""

    if TYPE_CHECKING:
        points: int
        tier: str | None

        @property
        def id(self) -> UUID: ...
        def require_live(self) -> None: ...
        def _require_not_churned(self, action: str) -> None: ...
        def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None: ...

    def earn_points(
        self,
        meta: Meta,
        points: int,
        reason: str | None,
        *,
        order_id: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        """A lot of ``points`` (earned by ``order_id``, expiring at ``expires_at``)."""
        self.require_live()
        _check_points(points)
        if expires_at is not None and expires_at <= meta.occurred_at:
            raise InvalidInput("expires_at", "must be after the points are earned")
        self.trigger_event(
            ev.PointsEarned,
            points=points,
            reason=reason,
            order_id=order_id,
            expires_at=expires_at,
            **meta.fields(),
        )

    def redeem_points(self, meta: Meta, points: int, reason: str | None) -> None:
        self._require_not_churned("redeem points of")
        _check_points(points)
        if points > self.points:
            raise InsufficientPoints(self.id, points, self.points)
        self.trigger_event(ev.PointsRedeemed, points=points, reason=reason, **meta.fields())

    def expire_points(self, meta: Meta, points: int, reason: str | None) -> None:
        self.require_live()
        _check_points(points)
        expiring = min(points, self.points)
        if expiring:
            self.trigger_event(ev.PointsExpired, points=expiring, reason=reason, **meta.fields())

    def revoke_points(self, meta: Meta, points: int, order_id: str, reason: str | None) -> None:
        """Take back the ``points`` refunded order ``order_id`` earned: at most the balance
        (never below zero). What was taken is recorded, 0 included (the points were spent):
        the order is then taken back once and for all."""
        self.require_live()
        _check_points(points)
        taking = min(points, self.points)
        self.trigger_event(
            ev.PointsRevoked, points=taking, order_id=order_id, reason=reason, **meta.fields()
        )

    def change_tier(
        self,
        meta: Meta,
        tier: str,
        reason: str | None = None,
        spend: dict[str, str] | None = None,
    ) -> bool:
        """Move to ``tier`` (with the ``spend`` that decided it, for an automatic change);
        False when already there."""
        self.require_live()
        if tier == self.tier:
            return False
        self.trigger_event(
            ev.TierChanged,
            tier=tier,
            previous_tier=self.tier,
            reason=reason,
            spend=spend,
            **meta.fields(),
        )
        return True


def _check_points(points: int) -> None:
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise InvalidInput("points", "must be a positive integer")
