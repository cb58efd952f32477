"""The policies and the customers they must leave alone, through the real command service on
every backend (docs/adr/0010, "Merges"; docs/adr/0011):

* a merge does not move points: the duplicate keeps its lots, frozen while it is merged (the
  sweeps never touch it: nothing earned, expired or re-tiered), the survivor earns nothing for
  the absorbed orders but their spend counts towards its tier; an unmerge gives the duplicate
  back its own lots, which the next sweep expires at their own expiry;
* erased and merged customers get no lifecycle or loyalty decision, by sweeps or reactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from commands import messages as m
from commands.policies import PolicyService
from commands.service import CommandService, Context
from consumers.lifecycle_policy import LifecycleRunner
from consumers.loyalty_policy import LoyaltyRunner
from infra.readstore import open_read_store
from infra.store import EventStore
from projections.loyalty import loyalty_view

DAY = timedelta(days=1)
T0 = datetime.now(UTC).replace(microsecond=0) - 400 * DAY
CLERK = Context(actor="clerk")
LOYALTY = {"earn": {"EUR": "1"}, "expiry_days": 100, "tiers": {"EUR": {"silver": "100"}}}


@dataclass
class Runners:
    lifecycle: LifecycleRunner
    loyalty: LoyaltyRunner

    def sweep(self, day: int) -> None:
        for runner in (self.lifecycle, self.loyalty):
            assert runner.sweep(T0 + day * DAY).rejected == 0
            while runner.react_once():
                pass


@pytest.fixture
def runners(store: EventStore, service: CommandService, database_url: str) -> Iterator[Runners]:
    policies = PolicyService(store)
    policies.define("loyalty", LOYALTY, Context(actor="ops"), effective_at=T0)
    policies.define("lifecycle", {}, Context(actor="ops"), effective_at=T0)
    checkpoints = open_read_store(database_url, pool_size=1)
    yield Runners(
        LifecycleRunner(store, service, policies, checkpoints),
        LoyaltyRunner(store, service, policies, checkpoints),
    )
    checkpoints.close()


def run(service: CommandService, command: m.Command) -> None:
    outcome = service.execute(command, CLERK)
    assert outcome.problem is None, outcome.problem


def customer(service: CommandService, name: str, *purchases: tuple[int, str]) -> UUID:
    outcome = service.execute(m.RegisterCustomer(name=name, occurred_at=T0), CLERK)
    assert outcome.customer_id is not None
    for day, amount in purchases:
        run(
            service,
            m.RecordPurchase(
                customer_id=outcome.customer_id,
                order_id=f"{name}-{day}",
                amount=amount,
                currency="EUR",
                occurred_at=T0 + day * DAY,
            ),
        )
    return outcome.customer_id


def policy_events(store: EventStore, cid: UUID) -> list[tuple[str, int]]:
    """(type, business day) of the policies' events for ``cid``."""
    return [
        (e.TYPE, round((e.occurred_at - T0) / DAY))
        for _, e in store.history(cid)
        if e.actor.startswith("clientele:policy-")
    ]


def test_a_merge_leaves_points_with_the_duplicate_frozen_and_an_unmerge_gives_them_back(
    store: EventStore, service: CommandService, runners: Runners
) -> None:
    ann = customer(service, "ann", (1, "50"))
    dan = customer(service, "dan", (2, "80"), (3, "40"))
    runners.sweep(5)
    assert store.customer(ann).points == 50 and store.customer(dan).points == 120
    assert (store.customer(ann).tier, store.customer(dan).tier) == ("bronze", "silver")

    run(service, m.MergeCustomers(customer_id=ann, duplicate_id=dan, occurred_at=T0 + 10 * DAY))
    frozen = policy_events(store, dan)
    runners.sweep(20)
    assert store.customer(ann).points == 50  # the absorbed orders earned with dan
    assert store.customer(ann).tier == "silver"  # 50 + 80 + 40 of spend in the window
    runners.sweep(150)  # every lot is past its 100 days
    assert store.customer(ann).points == 0
    assert store.customer(dan).points == 120 and policy_events(store, dan) == frozen
    lots = loyalty_view(e for _, e in store.history(dan))["lots"]
    assert [lot["remaining"] for lot in lots] == [80, 40]

    run(service, m.UnmergeCustomers(customer_id=ann, duplicate_id=dan, occurred_at=T0 + 160 * DAY))
    runners.sweep(170)
    assert store.customer(dan).points == 0
    back = [e for e in policy_events(store, dan)[len(frozen) :] if "points" in e[0]]
    assert back == [("customer.points_expired", 102), ("customer.points_expired", 103)]


def test_erased_and_merged_customers_get_no_decision(
    store: EventStore, service: CommandService, runners: Runners
) -> None:
    kept = customer(service, "kept", (1, "150"), (4, "10"))
    erased = customer(service, "erased", (1, "150"), (4, "10"))
    merged = customer(service, "merged", (1, "150"), (4, "10"))
    run(service, m.EraseCustomer(customer_id=erased, occurred_at=T0 + 2 * DAY))
    run(service, m.MergeCustomers(customer_id=kept, duplicate_id=merged, occurred_at=T0 + 2 * DAY))
    runners.sweep(390)
    assert policy_events(store, erased) == []
    assert policy_events(store, merged) == []
    kinds = {kind for kind, _ in policy_events(store, kept)}
    assert {"customer.points_earned", "customer.churned", "customer.tier_changed"} <= kinds
