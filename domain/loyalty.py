"""The loyalty policy: its document, and the pure decisions its process manager acts on.

* **earning**: a purchase earns ``amount x earn[currency]`` points, rounded by ``rounding``
  (``down``, ``half_up``, ``half_even``, ``up``) to a whole number, under the policy version in
  force at the purchase (none before the first version; a currency without a rate earns none).
  The points form a *lot* dated at the purchase, expiring ``expiry_days`` later (the expiry is
  fixed when the lot is earned: a later policy change never moves it);
* **taking back**: a refunded purchase takes back the points its order earned, at most the
  balance (never below zero);
* **expiring**: at its expiry a lot's remaining points expire (FIFO: see
  :mod:`domain.points`);
* **tiers**: ``bronze`` < ``silver`` < ``gold`` < ``platinum`` by the spend of the last
  ``spend_window_days`` (a rolling 12 months by default) against per-currency thresholds (the
  best tier any currency reaches; refunded orders stop counting from their refund). An upgrade
  applies at once; a customer who qualifies for less only drops after
  ``downgrade_grace_days`` below their tier, to what they qualify for then.

:func:`tier_decisions` is pure: facts folded from the event log, the policy version in force and a
business time in, the tier changes due out, each naming its rule and dated at its decision
point (a purchase, a purchase leaving the window, a refund, or the end of a grace period; never
before the version took effect), so whenever a sweep runs it makes the same decisions.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.errors import InvalidInput
from domain.values import normalise_currency, parse_amount

POLICY_NAME = "loyalty"
DAY = timedelta(days=1)
TIERS = ("bronze", "silver", "gold", "platinum")
ROUNDING = {
    "down": ROUND_DOWN,
    "half_up": ROUND_HALF_UP,
    "half_even": ROUND_HALF_EVEN,
    "up": ROUND_UP,
}


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Thresholds(_Part):
    """Spend in one currency (decimal strings) from which each tier above bronze applies."""

    silver: str = "500"
    gold: str = "2000"
    platinum: str = "5000"


class LoyaltyPolicy(_Part):
    """The loyalty policy document (``PUT /v1/policies/loyalty``); ``{}`` is the default policy
    (1 point per EUR, rounded down; lots expire after 365 days; tiers by a 365-day spend in EUR
    with 30 days of grace). Stored in this canonical, fully expanded form."""

    earn: dict[str, str] = Field(default_factory=lambda: {"EUR": "1"})
    rounding: Literal["down", "half_up", "half_even", "up"] = "down"
    expiry_days: int = Field(default=365, ge=1, le=3650)
    spend_window_days: int = Field(default=365, ge=1, le=3650)
    tiers: dict[str, Thresholds] = Field(default_factory=lambda: {"EUR": Thresholds()})
    downgrade_grace_days: int = Field(default=30, ge=0, le=3650)

    def first_problem(self) -> tuple[str, str] | None:
        """The first rule the document breaks, as (field path, message): currencies are
        canonical ISO-4217 codes, rates and thresholds decimal strings in canonical form, and
        thresholds rise strictly from silver to platinum."""
        for part in ("earn", "tiers"):
            for currency in getattr(self, part):
                problem = _canonical(f"{part}.{currency}", currency, normalise_currency)
                if problem is not None:
                    return problem
        for currency, rate in self.earn.items():
            if (problem := _canonical(f"earn.{currency}", rate, parse_amount)) is not None:
                return problem
        for currency, limits in self.tiers.items():
            previous = ("bronze", Decimal(0))
            for tier in TIERS[1:]:
                where, text = f"tiers.{currency}.{tier}", getattr(limits, tier)
                if (problem := _canonical(where, text, parse_amount)) is not None:
                    return problem
                if Decimal(text) <= previous[1]:
                    return where, f"must be greater than {previous[0]}'s ({previous[1]})"
                previous = (tier, Decimal(text))
        return None

    def points_for(self, amount: Decimal, currency: str) -> int:
        """Points a purchase of ``amount`` in ``currency`` earns (0 without a rate)."""
        rate = self.earn.get(currency)
        if rate is None:
            return 0
        return int((amount * Decimal(rate)).to_integral_value(rounding=ROUNDING[self.rounding]))

    def qualified(self, spend: Mapping[str, Decimal]) -> str:
        """The best tier ``spend`` (per currency) reaches in any currency; at least bronze."""
        best = 0
        for currency, limits in self.tiers.items():
            amount = spend.get(currency, Decimal(0))
            for rank, tier in enumerate(TIERS[1:], start=1):
                if amount >= Decimal(getattr(limits, tier)):
                    best = max(best, rank)
        return TIERS[best]


def _canonical(where: str, value: str, parse: object) -> tuple[str, str] | None:
    """(where, why) unless ``value`` is already in the canonical form ``parse`` gives."""
    try:
        canonical = str(parse(value))  # type: ignore[operator]
    except InvalidInput as error:
        return where, error.reason
    if canonical != value:
        return where, f"must be written {canonical!r}"
    return None


def reason(rule: str, version: int) -> str:
    """The reason recorded on an automatic event: the rule and the policy version."""
    return f"policy {POLICY_NAME} v{version}, rule {rule}"


# ------------------------------------------------------------------------------ tiers


@dataclass(frozen=True)
class Order:
    """A purchase as the tiers see it: counted from ``at`` until ``refunded_at`` (if any)."""

    order_id: str
    at: datetime
    amount: Decimal
    currency: str
    refunded_at: datetime | None = None


@dataclass(frozen=True)
class TierDecision:
    """Move to ``tier`` by ``rule`` at ``at``, on ``spend`` (per currency, in the window)."""

    tier: str
    previous: str | None
    rule: str
    at: datetime
    spend: dict[str, str]


def spend_at(orders: Iterable[Order], policy: LoyaltyPolicy, at: datetime) -> dict[str, Decimal]:
    """Spend per tier currency in the window ``(at - spend_window_days, at]``."""
    start = at - policy.spend_window_days * DAY
    spend = {currency: Decimal(0) for currency in policy.tiers}
    for order in orders:
        live = order.refunded_at is None or order.refunded_at > at
        if order.currency in spend and start < order.at <= at and live:
            spend[order.currency] += order.amount
    return spend


def _rank(tier: str | None) -> int:
    return TIERS.index(tier) if tier in TIERS else -1


@dataclass(frozen=True)
class TierFacts:
    """What the tier decision needs of one customer: their ``tier`` since ``since`` (their
    last tier change; None: never) and their ``orders``."""

    tier: str | None
    since: datetime | None
    orders: tuple[Order, ...]


def tier_decisions(
    facts: TierFacts, policy: LoyaltyPolicy, effective_at: datetime, at: datetime
) -> list[TierDecision]:
    """The tier changes due by ``at`` under ``policy`` (in force since ``effective_at``), in
    order. Decision points after ``since``: each purchase, each
    purchase leaving the window, each refund (each moved to ``effective_at`` if earlier);
    the qualified tier there is compared with the current one: higher is an upgrade
    (``tier_qualified``), lower starts the grace period, and still lower at its end is a
    downgrade (``tier_downgrade_after_grace``) to the tier qualified then; a point where the
    customer qualifies again for their tier ends the grace period."""
    tier, since, orders = facts.tier, facts.since, facts.orders
    window, grace = policy.spend_window_days * DAY, policy.downgrade_grace_days * DAY
    raw = [o.at for o in orders] + [o.at + window for o in orders]
    raw += [o.refunded_at for o in orders if o.refunded_at is not None]
    points = sorted({when for t in raw if (when := max(t, effective_at)) <= at})
    points = [t for t in points if since is None or t > since]
    heapq.heapify(points)
    made: list[TierDecision] = []
    below: datetime | None = None
    while points:
        now = heapq.heappop(points)
        while points and points[0] == now:
            heapq.heappop(points)
        spend = spend_at(orders, policy, now)
        qualified = policy.qualified(spend)
        if _rank(qualified) >= _rank(tier):
            below = None
            if qualified != tier:
                made.append(TierDecision(qualified, tier, "tier_qualified", now, _text(spend)))
                tier = qualified
            continue
        if below is None:
            below = now
            if now + grace <= at:
                heapq.heappush(points, now + grace)
        if now >= below + grace:
            rule = "tier_downgrade_after_grace"
            made.append(TierDecision(qualified, tier, rule, now, _text(spend)))
            tier, below = qualified, None
    return made


def _text(spend: Mapping[str, Decimal]) -> dict[str, str]:
    return {currency: str(amount) for currency, amount in sorted(spend.items())}
