"""What the loyalty policy decides for one customer by a business time: a pure function of
their events, the policy's versions and that time (docs/adr/0010-loyalty-policy.md).

:func:`plan` folds the customer's points into lots (:class:`domain.points.Ledger`, in the
order the events were recorded), then lists the steps due by ``at``, in the order they are to
be recorded, each folded into the ledger before the next is decided:

* ``earn`` for every purchase that has not earned yet, under the version in force at the
  purchase (its rate, rounding and expiry; rule ``earn_per_purchase``); orders a merge brought
  in earned with the duplicate and earn nothing again;
* ``revoke`` for every refunded order that earned and was not taken back yet (rule
  ``refund_takes_back_points``): the points it earned, of which the aggregate takes at most
  the balance (recording what it took, 0 included, so the order counts as taken back);
* ``expire`` for every lot whose expiry is due, its remaining points (rule ``lot_expired``,
  under the version in force at the expiry; the expiry itself was fixed when the lot was earned);
* ``tier`` for every tier change due (:func:`domain.loyalty.tier_decisions`) under the version
  in force at ``at``.

Every step is dated at its decision point and names its rule and the policy version.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from domain.loyalty import DAY, LoyaltyPolicy, Order, TierFacts, reason, tier_decisions
from domain.points import Ledger
from domain.values import utc_text

Kind = Literal["earn", "revoke", "expire", "tier"]
_ORDER: dict[str, int] = {"earn": 0, "revoke": 1, "expire": 2, "tier": 3}


@dataclass(frozen=True)
class Version:
    """One policy version as the plan needs it."""

    version: int
    effective_at: datetime
    policy: LoyaltyPolicy


@dataclass(frozen=True)
class Step:
    """One decision: ``points`` (earn, revoke, expire) or ``tier`` (with the ``spend`` that
    decided it), dated ``at``, by ``rule`` of policy ``version``; ``key`` makes its
    idempotency key unique per customer."""

    kind: Kind
    at: datetime
    rule: str
    version: int
    key: str
    points: int = 0
    order_id: str | None = None
    expires_at: datetime | None = None
    tier: str | None = None
    previous_tier: str | None = None
    spend: dict[str, str] | None = None

    @property
    def reason(self) -> str:
        return reason(self.rule, self.version)

    def view(self) -> dict[str, Any]:
        """The public shape of a planned step (``clientele policies simulate``)."""
        shown = {
            "kind": self.kind,
            "at": utc_text(self.at),
            "rule": self.rule,
            "policy_version": self.version,
        }
        if self.kind == "tier":
            return shown | {"from": self.previous_tier, "to": self.tier, "spend": self.spend}
        return shown | {"points": self.points, "order_id": self.order_id}


@dataclass(frozen=True)
class Member:
    """What the plan needs of one customer besides their points: whether they are live, their
    tier and its time (last tier change), their purchases and refunded orders (order id ->
    ``{amount, currency, occurred_at[, refunded_at]}``) and the orders a merge brought in."""

    live: bool
    tier: str | None
    tier_since: datetime | None
    purchases: dict[str, dict[str, Any]]
    refunded: dict[str, dict[str, Any]]
    absorbed_orders: frozenset[str]

    def orders(self) -> tuple[Order, ...]:
        both = [*self.purchases.items(), *self.refunded.items()]
        found = [
            Order(key, p["occurred_at"], p["amount"], p["currency"], p.get("refunded_at"))
            for key, p in both
        ]
        return tuple(sorted(found, key=lambda o: (o.at, o.order_id)))


def in_force(versions: Sequence[Version], at: datetime) -> Version | None:
    """The newest version in force at ``at`` (versions oldest first)."""
    for version in reversed(versions):
        if version.effective_at <= at:
            return version
    return None


def ledger_of(events: Iterable[Any]) -> Ledger:
    """The points ledger of a customer's domain events (stream order)."""
    ledger = Ledger()
    for event in events:
        ledger.fold(event.TYPE, event.data(), event.occurred_at, event.originator_version)
    return ledger


def plan(member: Member, ledger: Ledger, versions: Sequence[Version], at: datetime) -> list[Step]:
    """The steps due by ``at`` (see the module docstring); ``ledger`` is not changed."""
    current = in_force(versions, at)
    if current is None or not member.live:
        return []
    pending = _earnings(member, ledger, versions, at) + _revocations(member, ledger, current)
    pending.sort(key=lambda s: (s.at, _ORDER[s.kind]))
    simulated = ledger.copy()
    steps: list[Step] = []
    for step in pending:
        steps += _expiries(simulated, versions, current, step.at, inclusive=False)
        _fold(simulated, step)
        steps.append(step)
    steps += _expiries(simulated, versions, current, at, inclusive=True)
    facts = TierFacts(member.tier, member.tier_since, member.orders())
    for decision in tier_decisions(facts, current.policy, current.effective_at, at):
        steps.append(
            Step(
                "tier",
                decision.at,
                decision.rule,
                current.version,
                f"{decision.rule}:{utc_text(decision.at)}",
                tier=decision.tier,
                previous_tier=decision.previous,
                spend=decision.spend,
            )
        )
    steps.sort(key=lambda s: (s.at, _ORDER[s.kind]))  # stable: points steps keep their order
    return steps


def _earnings(
    member: Member, ledger: Ledger, versions: Sequence[Version], at: datetime
) -> list[Step]:
    found = []
    for order_id, p in member.purchases.items():
        bought = p["occurred_at"]
        done = order_id in ledger.earned_by_order or order_id in member.absorbed_orders
        version = in_force(versions, bought)
        if done or bought > at or version is None:
            continue
        points = version.policy.points_for(p["amount"], p["currency"])
        if points > 0:
            expires_at = bought + version.policy.expiry_days * DAY
            rule, key = "earn_per_purchase", f"earn:{order_id}"
            found.append(
                Step("earn", bought, rule, version.version, key, points, order_id, expires_at)
            )
    return found


def _revocations(member: Member, ledger: Ledger, current: Version) -> list[Step]:
    found = []
    for order_id, p in member.refunded.items():
        earned = ledger.earned_by_order.get(order_id)
        if earned is None or order_id in ledger.revoked_orders:
            continue
        rule, key = "refund_takes_back_points", f"revoke:{order_id}"
        found.append(Step("revoke", p["refunded_at"], rule, current.version, key, earned, order_id))
    return found


def _expiries(
    ledger: Ledger, versions: Sequence[Version], current: Version, until: datetime, inclusive: bool
) -> list[Step]:
    """Expire every lot due before ``until`` (or at it, if ``inclusive``), folding each."""
    steps = []
    for lot in ledger.due(until):
        assert lot.expires_at is not None
        if lot.expires_at == until and not inclusive:
            continue
        version = in_force(versions, lot.expires_at) or current
        key = f"expire:{lot.key}:{utc_text(lot.at)}"
        step = Step("expire", lot.expires_at, "lot_expired", version.version, key, lot.remaining)
        _fold(ledger, step)
        steps.append(step)
    return steps


def _fold(ledger: Ledger, step: Step) -> None:
    """Fold ``step`` as the aggregate records it (a revocation takes at most the balance)."""
    data: dict[str, Any] = {"points": step.points, "order_id": step.order_id}
    if step.kind == "earn":
        data["expires_at"] = step.expires_at
    elif step.kind == "revoke":
        data["points"] = min(step.points, ledger.balance)
    kind = {"earn": "points_earned", "revoke": "points_revoked", "expire": "points_expired"}
    ledger.fold(f"customer.{kind[step.kind]}", data, step.at, 0)
