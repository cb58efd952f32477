"""Months of simulated purchases over 5,000 customers with a controllable business clock: the
lifecycle policy's sweeps (through the real command service) move customers through new,
active, loyal, at risk and churned, and a purchase after churn reactivates and re-stages them,
exactly as an independent model computed here says.

The model is written from the rules (README, "Policies"), not from the implementation: each
customer is a small state machine (stage, status, the time of the last deliberate stage
change) driven by a timeline of purchases (10:00 of their day) and sweeps (00:00 every
``EVERY`` days). A purchase reactivates a churned customer and makes a prospect new (the
aggregate's own rules, not deliberate); a sweep at S applies, one after the other, the first
decision point after the last deliberate change and up to S whose stage differs from the
current one: the ladder at the last purchase (loyal: ``LOYAL_MIN`` purchases within
``LOYAL_WINDOW`` days; active: ``ACTIVE_MIN`` within ``ACTIVE_WINDOW``; else new for a
prospect or new customer, active for a returning one), then at risk and churned once the
customer has bought nothing for a multiple of their median gap, bounded (the longest bound
while there is no gap). A churned customer waits for a purchase. Purchases are recorded
between sweeps, as a shop would: a purchase before a sweep noticed an inactivity period that
ended keeps the customer from that decision, in the model as in the system. A final sweep
again records nothing.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from statistics import median
from uuid import UUID

import pytest

from commands import messages as m
from commands.policies import PolicyService
from commands.service import CommandService, Context
from consumers.lifecycle_policy import ACTOR, LifecycleRunner
from infra.store import EventStore

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
T0 = (datetime.now(UTC) - 500 * DAY).replace(hour=0, minute=0, second=0, microsecond=0)
CUSTOMERS = 5_000
DAYS = 420
EVERY = 20  # business days between sweeps
H = 24  # the model counts in hours (exact): purchases at 10:00 of their day
AT = 10
ACTIVE_WINDOW, ACTIVE_MIN = 60, 2
LOYAL_WINDOW, LOYAL_MIN = 180, 5
AT_RISK = (3, 20, 60)  # gap multiple, min days, max days
CHURNED = (6, 45, 120)
POLICY = {
    "active": {"window_days": ACTIVE_WINDOW, "min_purchases": ACTIVE_MIN},
    "loyal": {"window_days": LOYAL_WINDOW, "min_purchases": LOYAL_MIN},
    "at_risk": dict(zip(("gap_multiple", "min_days", "max_days"), AT_RISK, strict=True)),
    "churned": dict(zip(("gap_multiple", "min_days", "max_days"), CHURNED, strict=True)),
}
CTX = Context(actor="simulation")
pytestmark = pytest.mark.backends("memory")


def generate(rng: random.Random) -> list[list[int]]:
    """Each customer's purchase days: one to three episodes of buying (every 3-25 days) with
    pauses of 10-200 days between them; some never buy."""
    people = []
    for _ in range(CUSTOMERS):
        days: set[int] = set()
        day = rng.randint(1, 120)
        for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):
            for _ in range(rng.randint(1, 7)):
                days.add(day)
                day += rng.randint(3, 25)
            day += rng.randint(10, 200)
        people.append(sorted(d for d in days if d < DAYS))
    return people


# --------------------------------------------------------------------- the independent model


@dataclass
class Model:
    """One customer as the rules see them; ``events``: (type, stage, rule, day) of the
    policy's decisions; ``reactivations``: purchases after churn."""

    stage: str = "prospect"
    status: str = "active"
    since: int = 0  # hours after T0
    bought: list[int] = field(default_factory=list)
    events: list[tuple[str, str | None, str, int]] = field(default_factory=list)
    reactivations: int = 0

    def purchase(self, at: int) -> None:
        self.bought.append(at)
        if self.status == "churned":
            self.status, self.stage = "active", "active"
            self.reactivations += 1
        elif self.stage == "prospect":
            self.stage = "new"

    def ladder(self) -> tuple[str, str]:
        last = self.bought[-1]
        if sum(1 for b in self.bought if b > last - LOYAL_WINDOW * H) >= LOYAL_MIN:
            return "loyal", "loyal_sustained_purchasing"
        if sum(1 for b in self.bought if b > last - ACTIVE_WINDOW * H) >= ACTIVE_MIN:
            return "active", "active_repeat_purchases"
        if self.stage in ("prospect", "new"):
            return "new", "new_first_purchases"
        return "active", "active_returning_purchase"

    def sweep(self, at: int) -> None:
        while self.bought and (decision := self._next(at)) is not None:
            when, stage, rule = decision
            if stage == "churned":
                self.status = "churned"
                self.events.append(("customer.churned", None, rule, when))
            else:
                self.events.append(("customer.lifecycle_stage_changed", stage, rule, when))
            self.stage, self.since = stage, when

    def _next(self, at: int) -> tuple[int, str, str] | None:
        last = self.bought[-1]
        gaps = [b - a for a, b in pairwise(self.bought)]
        gap = round(median(gaps)) if gaps else None  # whole days: a multiple of 12 hours

        def period(multiple: int, low: int, high: int) -> int:
            return high * H if gap is None else min(max(gap * multiple, low * H), high * H)

        at_risk, churned = last + period(*AT_RISK), last + period(*CHURNED)
        points = [(last, *self.ladder())]
        if at_risk < churned:
            points.append((at_risk, "at_risk", "at_risk_after_inactivity"))
        points.append((churned, "churned", "churned_after_inactivity"))
        for when, stage, rule in points:
            if not self.since < when <= at or stage == self.stage:
                continue
            if self.status == "churned":
                return None  # a churned customer waits for a purchase
            return when, stage, rule
        return None


def expected(people: Sequence[list[int]]) -> list[Model]:
    models = []
    for days in people:
        model = Model()
        timeline = [(d * H + AT, 1) for d in days]
        timeline += [(s * H, 0) for s in range(EVERY, DAYS + 1, EVERY)]
        for when, kind in sorted(timeline):  # a sweep at 00:00 comes before that day's purchase
            model.purchase(when) if kind else model.sweep(when)
        models.append(model)
    return models


# --------------------------------------------------------------------------- the simulation


def test_months_of_purchases_match_the_independent_model(
    store: EventStore, service: CommandService
) -> None:
    people = generate(random.Random(18))
    registered = service.execute_batch(
        [m.RegisterCustomer(name=f"C{i}", occurred_at=T0) for i in range(CUSTOMERS)], CTX
    )
    ids = [UUID(str(o.customer_id)) for o in registered]
    policies = PolicyService(store)
    policies.define("lifecycle", POLICY, CTX, effective_at=T0)
    runner = LifecycleRunner(store, service, policies, None, batch_size=1000)
    done = 0
    for sweep in range(EVERY, DAYS + 1, EVERY):
        _execute(
            service,
            [
                m.RecordPurchase(
                    customer_id=cid,
                    order_id=f"o-{day}",
                    amount="25.00",
                    currency="EUR",
                    occurred_at=T0 + day * DAY + AT * HOUR,
                )
                for cid, days in zip(ids, people, strict=True)
                for day in days
                if done <= day < sweep
            ],
        )
        report = runner.sweep(T0 + sweep * DAY)
        assert (report.customers, report.rejected) == (CUSTOMERS, 0), report.problems[:3]
        done = sweep
    assert runner.sweep(T0 + DAYS * DAY).recorded == 0  # a sweep again: nothing twice

    rules: Counter[str] = Counter()
    for cid, model in zip(ids, expected(people), strict=True):
        got, reactivations = [], 0
        for event in store.customer_events(cid):
            if event.TYPE == "customer.reactivated":
                reactivations += 1
            if event.actor != ACTOR:
                continue
            reason = event.data()["reason"]
            assert reason.startswith("policy lifecycle v1, rule "), reason
            hours = (event.occurred_at - T0) / HOUR
            got.append((event.TYPE, getattr(event, "stage", None), reason.split()[-1], hours))
        assert got == model.events, (cid, people[ids.index(cid)])
        assert reactivations == model.reactivations
        customer = store.customer(cid)
        assert (customer.lifecycle_stage, customer.status) == (model.stage, model.status)
        rules.update(rule for _, _, rule, _ in got)
        rules["reactivated"] += reactivations
    # the simulation exercised every rule, many times
    assert len(rules) == 6 and min(rules.values()) > 50, rules


def _execute(service: CommandService, commands: Sequence[m.Command]) -> None:
    for start in range(0, len(commands), 1000):
        outcomes = service.execute_batch(commands[start : start + 1000], CTX)
        assert [o.problem for o in outcomes if o.problem] == []
