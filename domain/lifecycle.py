"""The lifecycle policy: its document, and the pure decision a process manager acts on.

A customer's stage follows their purchases (docs/adr/0008-lifecycle-policies.md):

* registered → ``prospect`` (the registration's default) and first purchase → ``new`` are the
  aggregate's own rules (:meth:`domain.customer.Customer.record_purchase`), as is a purchase
  after churn → reactivated; the policy re-stages after them;
* at each purchase, the *ladder*: ``loyal`` when the purchases in the loyal window reach a
  count (and, if set, a spend); else ``active`` when the active window holds a repeat
  purchase; else ``new`` for a customer who never got further, ``active`` for one returning;
* after the last purchase, inactivity: ``at_risk`` once the customer has bought nothing for
  ``at_risk`` days, ``churned`` once for ``churned`` days, where each period is a multiple of
  the customer's own median gap between purchases, bounded by ``min_days`` and ``max_days``
  (``max_days`` while there is no gap to measure).

:func:`decide` is pure: facts folded from the event log (:func:`facts_of`), the policy version
in force and a business time in, at most one stage change out, naming its rule and dated at
its *decision point* (the purchase, or the instant the inactivity period ran out; never before
the version took effect), so that whenever a sweep runs it makes the same decision.

A stage set deliberately (by a person, by the registration, or by an earlier decision) holds
until a decision point after it: that is how a manual stage command coexists with the policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise
from statistics import median
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from domain.btyd import alive_until
from domain.churn_model import MODEL_NAME, FittedVersion, summary_of
from domain.errors import InvalidInput
from domain.values import LifecycleStage, Status, normalise_currency, parse_amount

POLICY_NAME = "lifecycle"
DAY = timedelta(days=1)


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ActiveRule(_Part):
    """Repeat purchases: ``min_purchases`` within ``window_days`` (ending at a purchase)."""

    window_days: int = Field(default=90, ge=1, le=3650)
    min_purchases: int = Field(default=2, ge=2, le=1000)


class LoyalRule(_Part):
    """Sustained purchasing: ``min_purchases`` within ``window_days``, and (if set) a spend of
    at least ``min_spend`` in ``currency`` there (purchases in other currencies do not count
    towards the spend)."""

    window_days: int = Field(default=365, ge=1, le=3650)
    min_purchases: int = Field(default=5, ge=2, le=1000)
    min_spend: str | None = Field(default=None, examples=["500.00"])
    currency: str = "EUR"

    @field_validator("min_spend")
    @classmethod
    def _amount(cls, value: str | None) -> str | None:
        return None if value is None else str(_or_value_error(parse_amount, value))

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return str(_or_value_error(normalise_currency, value))


class InactivityRule(_Part):
    """No purchase for ``gap_multiple`` x the customer's median inter-purchase gap, bounded to
    [``min_days``, ``max_days``] (``max_days`` with fewer than two purchases)."""

    gap_multiple: float = Field(gt=0, le=100)
    min_days: int = Field(ge=1, le=3650)
    max_days: int = Field(ge=1, le=3650)

    def period(self, gap: timedelta | None) -> timedelta:
        """The inactivity period for a customer whose median gap is ``gap``."""
        if gap is None:
            return self.max_days * DAY
        seconds = round(gap.total_seconds() * self.gap_multiple)
        return min(max(timedelta(seconds=seconds), self.min_days * DAY), self.max_days * DAY)


class AtRiskRule(InactivityRule):
    """The at-risk rule: the inactivity period, or, with ``p_alive_below`` set, the instant the
    churn model's ``P(alive)`` (:mod:`domain.btyd`) falls below it (for customers with a repeat
    purchase day while a fit is in force; the others keep the inactivity period)."""

    p_alive_below: float | None = Field(default=None, gt=0, lt=1)

    @model_serializer(mode="wrap")
    def _without_unset_threshold(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Without a threshold the canonical form is the inactivity rule's, as before the
        option existed (so an unchanged document never becomes a new version)."""
        dumped = handler(self)
        if isinstance(dumped, dict) and dumped.get("p_alive_below") is None:
            dumped.pop("p_alive_below", None)
        return dumped


class LifecyclePolicy(_Part):
    """The lifecycle policy document (``PUT /v1/policies/lifecycle``); every part has defaults,
    so ``{}`` is the default policy. Stored in this canonical, fully expanded form."""

    active: ActiveRule = ActiveRule()
    loyal: LoyalRule = LoyalRule()
    at_risk: AtRiskRule = AtRiskRule(gap_multiple=3, min_days=30, max_days=180)
    churned: InactivityRule = InactivityRule(gap_multiple=6, min_days=90, max_days=365)

    @model_validator(mode="before")
    @classmethod
    def _partial_periods(cls, data: Any) -> Any:
        """A period given in part takes the rest from its default (each period has its own)."""
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        for name in ("at_risk", "churned"):
            given = filled.get(name)
            if isinstance(given, dict):
                filled[name] = cls.model_fields[name].default.model_dump() | given
        return filled

    def first_problem(self) -> tuple[str, str] | None:
        """The first rule across fields that the document breaks, as (field path, message):
        each inactivity period's bounds in order, and churn strictly after at-risk for every
        rhythm (so every part of churned exceeds at_risk's)."""
        for name in ("at_risk", "churned"):
            rule: InactivityRule = getattr(self, name)
            if rule.max_days < rule.min_days:
                return f"{name}.max_days", f"must be at least {name}.min_days ({rule.min_days})"
        for part in ("gap_multiple", "min_days", "max_days"):
            late, early = getattr(self.churned, part), getattr(self.at_risk, part)
            if late <= early:
                return f"churned.{part}", f"must be greater than at_risk.{part} ({early})"
        if self.loyal.min_purchases < self.active.min_purchases:
            minimum = self.active.min_purchases
            return "loyal.min_purchases", f"must be at least active.min_purchases ({minimum})"
        return None


def _or_value_error(parse: Any, value: object) -> object:
    """A ``domain.values`` parser whose refusal pydantic reports on the field at hand."""
    try:
        return parse(value)
    except InvalidInput as error:
        raise ValueError(error.reason) from None


# ------------------------------------------------------------------------ facts and decision


@dataclass(frozen=True)
class Purchase:
    at: datetime
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class Facts:
    """What the decision needs of one customer: ``stage_since`` is the business time of the
    last deliberate stage change (registration, a command, a policy decision); the stage
    changes a purchase causes by itself inside the aggregate do not count."""

    status: str
    stage: str
    stage_since: datetime
    purchases: tuple[Purchase, ...]  # by business time

    def after(self, decision: Decision) -> Facts:
        """The facts once ``decision`` is recorded (what the next decision starts from)."""
        status = Status.CHURNED.value if decision.stage == LifecycleStage.CHURNED else self.status
        return replace(self, status=status, stage=decision.stage, stage_since=decision.at)


@dataclass(frozen=True)
class Decision:
    """Move to ``stage`` by ``rule``, dated ``at`` (the decision point); ``model_version``:
    the churn model's fitted version the rule used, if any."""

    stage: str
    rule: str
    at: datetime
    model_version: int | None = None

    def reason(self, version: int) -> str:
        """The reason recorded on the event: the rule and the policy version (and the
        churn model's version for the p_alive rule)."""
        return reason(self.rule, version, self.model_version)


def reason(rule: str, version: int, model_version: int | None = None) -> str:
    used = "" if model_version is None else f", model {MODEL_NAME} v{model_version}"
    return f"policy {POLICY_NAME} v{version}, rule {rule}{used}"


def _is_consequence(event: Any, previous: Any) -> bool:
    """A stage change the aggregate made as part of recording a purchase (first purchase →
    new, purchase after churn → reactivated): not a deliberate change."""
    kind = getattr(event, "TYPE", "")
    by_purchase = (kind, getattr(event, "reason", None)) in {
        ("customer.lifecycle_stage_changed", "first_purchase"),
        ("customer.reactivated", "purchase"),
    }
    return (
        by_purchase
        and getattr(previous, "TYPE", "") == "customer.purchase_recorded"
        and previous.correlation_id == event.correlation_id
    )


STAGE_EVENTS = frozenset(
    {
        "customer.registered",
        "customer.lifecycle_stage_changed",
        "customer.churned",
        "customer.reactivated",
    }
)


def facts_of(
    status: str, stage: str, purchases: Mapping[str, Mapping[str, Any]], events: Iterable[Any]
) -> Facts:
    """Facts of a customer from their current state (``status``, ``stage``, the aggregate's
    ``purchases`` by order id) and their events, oldest first (for ``stage_since``)."""
    since: datetime | None = None
    previous = None
    for event in events:
        if event.TYPE in STAGE_EVENTS and not _is_consequence(event, previous):
            since = event.occurred_at if since is None else max(since, event.occurred_at)
        previous = event
    if since is None:
        raise ValueError("a customer's events begin with their registration")
    bought = sorted(
        (Purchase(p["occurred_at"], p["amount"], p["currency"]) for p in purchases.values()),
        key=lambda p: p.at,
    )
    return Facts(status, stage, since, tuple(bought))


def median_gap(purchases: tuple[Purchase, ...]) -> timedelta | None:
    """The median time between consecutive purchases (None with fewer than two)."""
    if len(purchases) < 2:
        return None
    gaps = [(b.at - a.at).total_seconds() for a, b in pairwise(purchases)]
    return timedelta(seconds=median(gaps))


def _ladder(bought: tuple[Purchase, ...], stage: str, policy: LifecyclePolicy) -> tuple[str, str]:
    """Stage and rule at the last of ``bought``."""
    last = bought[-1].at
    loyal = policy.loyal
    recent = [p for p in bought if p.at > last - loyal.window_days * DAY]
    spend = sum((p.amount for p in recent if p.currency == loyal.currency), Decimal(0))
    if len(recent) >= loyal.min_purchases and (
        loyal.min_spend is None or spend >= Decimal(loyal.min_spend)
    ):
        return LifecycleStage.LOYAL, "loyal_sustained_purchasing"
    window = policy.active.window_days * DAY
    if sum(1 for p in bought if p.at > last - window) >= policy.active.min_purchases:
        return LifecycleStage.ACTIVE, "active_repeat_purchases"
    if stage in (LifecycleStage.PROSPECT, LifecycleStage.NEW):
        return LifecycleStage.NEW, "new_first_purchases"
    return LifecycleStage.ACTIVE, "active_returning_purchase"


def _p_alive_point(
    bought: tuple[Purchase, ...], rule: AtRiskRule, model: FittedVersion | None
) -> datetime | None:
    """When ``P(alive)`` under ``model`` falls below ``rule.p_alive_below`` if nothing more is
    bought (never before the last purchase nor the fit's ``as_of``), or None: no threshold,
    no model, or no repeat purchase day (P(alive) stays 1)."""
    if rule.p_alive_below is None or model is None:
        return None
    summary = summary_of([p.at for p in bought], bought[-1].at)
    assert summary is not None
    days = alive_until(model.parameters, summary.frequency, summary.recency, rule.p_alive_below)
    if days is None:
        return None
    first_day = datetime.combine(bought[0].at.astimezone(UTC).date(), time(), UTC)
    crossing = first_day + timedelta(days=days)
    return max(crossing, bought[-1].at, model.as_of)


def decide(
    facts: Facts,
    policy: LifecyclePolicy,
    effective_at: datetime,
    at: datetime,
    model: FittedVersion | None = None,
) -> Decision | None:
    """The next stage change due by business time ``at`` under ``policy`` (in force since
    ``effective_at``), or None.

    The candidate decision points after ``facts.stage_since`` and up to ``at`` are, in time
    order: the last purchase (ladder), the end of the at-risk period, the end of the churn
    period; the first whose stage differs from the current one is the decision (apply it and
    ask again for the next). Merged and erased customers get none; a churned customer none but
    churned (a purchase reactivates them in the aggregate). With ``at_risk.p_alive_below`` and
    a churn ``model`` fit, the at-risk point is when P(alive) falls below the threshold
    (:func:`_p_alive_point`; a point at or after the churn point is no at-risk point: the
    customer goes straight to churned).
    """
    if facts.status not in (Status.ACTIVE, Status.CHURNED):
        return None
    bought = tuple(p for p in facts.purchases if p.at <= at)
    if not bought:
        return None
    last = bought[-1].at
    gap = median_gap(bought)
    churn_point = last + policy.churned.period(gap)
    at_risk: tuple[datetime, str, str, int | None] = (
        last + policy.at_risk.period(gap),
        LifecycleStage.AT_RISK,
        "at_risk_after_inactivity",
        None,
    )
    if (crossing := _p_alive_point(bought, policy.at_risk, model)) is not None:
        assert model is not None
        at_risk = (crossing, LifecycleStage.AT_RISK, "at_risk_p_alive_below", model.version)
    candidates = [
        (last, *_ladder(bought, facts.stage, policy), None),
        *([at_risk] if at_risk[0] < churn_point else []),
        (churn_point, LifecycleStage.CHURNED, "churned_after_inactivity", None),
    ]
    due = [
        (when, stage, rule, used)
        for point, stage, rule, used in candidates
        if facts.stage_since < (when := max(point, effective_at)) <= at
    ]
    # points the effective time moved to one instant: the last (furthest) stands for them all
    due = [c for i, c in enumerate(due) if i + 1 == len(due) or due[i + 1][0] != c[0]]
    for when, stage, rule, used in due:
        if stage == facts.stage:
            continue
        if facts.status == Status.CHURNED and stage != LifecycleStage.CHURNED:
            return None
        return Decision(str(stage), rule, when, used)
    return None


def settle(
    facts: Facts,
    policy: LifecyclePolicy,
    effective_at: datetime,
    at: datetime,
    model: FittedVersion | None = None,
) -> list[Decision]:
    """Every decision due by ``at``, in order, each applied before the next is decided (at
    most three: the ladder, at risk, churned)."""
    made: list[Decision] = []
    while (decision := decide(facts, policy, effective_at, at, model)) is not None:
        made.append(decision)
        facts = facts.after(decision)
    return made
