"""The loyalty policy's process manager: earns points per purchase, takes them back on a
refund, expires lots and re-evaluates tiers, by sending ordinary commands through the command
side (docs/adr/0010-loyalty-policy.md).

It is the lifecycle runner (:class:`consumers.lifecycle_policy.LifecycleRunner`: reacting to
the store's log from its own checkpoint, sweeping as of a business time, simulating) with the
loyalty decision: :func:`domain.loyalty_plan.plan` of the customer's events, the policy's
versions and the business time. Each step is sent with the customer's version as expected
version and an idempotency key from the order (earning, taking back), the lot (expiry) or
(policy version, rule, decision point) (tiers), so re-running, two runners at once or a
redelivered event never record a step twice; its reason names the rule and policy version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from commands import messages as m
from consumers.lifecycle_policy import History, LifecycleRunner
from domain import events as ev
from domain.churn_model import ChurnModel
from domain.customer import Customer
from domain.loyalty import POLICY_NAME, LoyaltyPolicy
from domain.loyalty_plan import Member, Step, Version, ledger_of, plan
from domain.policy import Policy

REACTS_TO = [get_topic(cls) for cls in (ev.PurchaseRecorded, ev.PurchaseRefunded)]


@dataclass(frozen=True)
class Planned:
    """One step for one customer."""

    customer_id: UUID
    step: Step

    def view(self) -> dict[str, Any]:
        return {"customer_id": str(self.customer_id), "policy": POLICY_NAME, **self.step.view()}

    def command(self, expected_version: int) -> m.Command:
        """The ordinary command carrying the step."""
        s = self.step
        key = f"policy:{POLICY_NAME}:{self.customer_id}:{s.key}"
        if s.kind == "tier":
            key = f"policy:{POLICY_NAME}:v{s.version}:{self.customer_id}:{s.key}"
        common: dict[str, Any] = {
            "customer_id": self.customer_id,
            "expected_version": expected_version,
            "idempotency_key": key,
            "occurred_at": s.at,
            "reason": s.reason,
        }
        if s.kind == "earn":
            return m.EarnPoints(
                points=s.points, order_id=s.order_id, expires_at=s.expires_at, **common
            )
        if s.kind == "revoke":
            assert s.order_id is not None
            return m.RevokePoints(points=s.points, order_id=s.order_id, **common)
        if s.kind == "expire":
            return m.ExpirePoints(points=s.points, **common)
        assert s.tier is not None
        return m.ChangeTier(tier=s.tier, spend=s.spend, **common)


def member_of(customer: Customer, events: list[Any]) -> Member:
    """What the plan needs of a customer, from their state and their events (stream order)."""
    changes = [e.occurred_at for e in events if e.TYPE == ev.TierChanged.TYPE]
    absorbed = {order for record in customer.absorbed.values() for order in record["purchases"]}
    return Member(
        customer.is_live,
        customer.tier,
        max(changes) if changes else None,
        customer.purchases,
        customer.refunded,
        frozenset(absorbed),
    )


class LoyaltyRunner(LifecycleRunner):
    """Decides points and tiers for the customers in ``store`` by ``commands``."""

    name = POLICY_NAME
    decides = "loyalty points and tiers"
    actor = f"clientele:policy-{POLICY_NAME}"
    reacts_to = REACTS_TO

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parsed: dict[int, Version] = {}

    def steps(self, history: History, at: datetime, policy: Policy) -> tuple[int, list[Planned]]:
        """(the customer's version, the steps due for them by ``at``)."""
        if policy.in_force(at) is None:
            return 0, []
        customer, events = history
        versions = self._versions(policy)
        found = plan(member_of(customer, events), ledger_of(events), versions, at)
        return customer.version, [Planned(customer.id, step) for step in found]

    def _versions(self, policy: Policy) -> list[Version]:
        """The policy's versions with their documents parsed (once per version)."""
        parsed = self._parsed
        for v in policy.versions[len(parsed) :]:
            parsed[v.version] = Version(
                v.version, v.effective_at, LoyaltyPolicy.model_validate(v.document)
            )
        return [parsed[v.version] for v in policy.versions]

    def decisions(
        self, history: History, at: datetime, policy: Policy, model: ChurnModel | None
    ) -> tuple[int, list[Any]]:
        """(the customer's version, the steps due for them by ``at``) as :meth:`steps`: the
        sweep's decision hook; 0 and no steps when no policy version is in force."""
        del model  # points and tiers use no churn model
        return self.steps(history, at, policy)
