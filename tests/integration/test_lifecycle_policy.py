"""The lifecycle policy's process manager through the real command service, on SQLite and
PostgreSQL: stages decided from purchases and the passage of business time, each event naming
its rule and policy version; re-runs and concurrent sweeps that record nothing twice; a manual
stage that holds, recorded as the person's; a purchase after churn that re-stages; a policy
change that applies from its effective time; a simulation that changes nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from bootstrap import build
from bootstrap.policy_processes import policy_runner
from commands import messages as m
from commands.policies import PolicyService
from commands.service import CommandService, Context
from consumers.lifecycle_policy import ACTOR, LifecycleRunner
from domain.values import utc_text
from infra.envelope import event_id
from infra.readstore import open_read_store
from infra.settings import Settings
from infra.store import EventStore

DAY = timedelta(days=1)
T0 = datetime.now(UTC).replace(microsecond=0) - 500 * DAY
CLERK = Context(actor="clerk")


@pytest.fixture
def runner(
    store: EventStore, service: CommandService, database_url: str
) -> Iterator[LifecycleRunner]:
    checkpoints = open_read_store(database_url, pool_size=1)
    policies = PolicyService(store)
    policies.define("lifecycle", {}, Context(actor="ops"), effective_at=T0)
    yield LifecycleRunner(store, service, policies, checkpoints, batch_size=3)
    checkpoints.close()


def register(service: CommandService, name: str) -> UUID:
    outcome = service.execute(m.RegisterCustomer(name=name, occurred_at=T0), CLERK)
    assert outcome.customer_id is not None
    return outcome.customer_id


def buy(service: CommandService, customer: UUID, *days: int) -> None:
    outcomes = service.execute_batch(
        [
            m.RecordPurchase(
                customer_id=customer,
                order_id=f"o-{day}",
                amount="20.00",
                currency="EUR",
                occurred_at=T0 + day * DAY,
            )
            for day in days
        ],
        CLERK,
    )
    assert [o.problem for o in outcomes if o.problem] == []


def stages(store: EventStore, customer: UUID) -> list[tuple[str, Any, Any, str, int]]:
    """(type, stage, reason, actor, business day) of the customer's stage events."""
    kinds = {"customer.lifecycle_stage_changed", "customer.churned", "customer.reactivated"}
    return [
        (
            e.TYPE,
            getattr(e, "stage", None),
            getattr(e, "reason", None),
            e.actor,
            (e.occurred_at - T0) // DAY,
        )
        for _, e in store.history(customer)
        if e.TYPE in kinds
    ]


def react(runner: LifecycleRunner) -> None:
    for _ in range(100):
        if runner.react_once() == 0:
            return
    raise AssertionError("the runner did not catch up")


def rule(name: str, version: int = 1) -> str:
    return f"policy lifecycle v{version}, rule {name}"


def test_stages_follow_purchases_and_time_and_name_rule_and_version(
    store: EventStore, service: CommandService, runner: LifecycleRunner
) -> None:
    ada = register(service, "Ada")
    buy(service, ada, 1, 11, 21, 31, 41)  # every ten days
    react(runner)
    # gap 10 days: at risk after max(3 x 10, 30) = 30 days, churned after max(6 x 10, 90) = 90
    planned = [p.view() for p in runner.simulate(T0 + 200 * DAY)]
    head = store.head()
    assert [(p["to"], p["rule"]) for p in planned] == [
        ("at_risk", "at_risk_after_inactivity"),
        ("churned", "churned_after_inactivity"),
    ]
    assert store.head() == head  # a simulation records nothing
    report = runner.sweep(T0 + 200 * DAY)
    assert (report.customers, report.recorded, report.rejected) == (1, 2, 0)
    assert stages(store, ada) == [
        ("customer.lifecycle_stage_changed", "new", "first_purchase", "clerk", 1),
        ("customer.lifecycle_stage_changed", "active", rule("active_repeat_purchases"), ACTOR, 11),
        (
            "customer.lifecycle_stage_changed",
            "loyal",
            rule("loyal_sustained_purchasing"),
            ACTOR,
            41,
        ),
        (
            "customer.lifecycle_stage_changed",
            "at_risk",
            rule("at_risk_after_inactivity"),
            ACTOR,
            71,
        ),
        ("customer.churned", None, rule("churned_after_inactivity"), ACTOR, 131),
    ]
    # who caused what: a reaction names the purchase, a sweep its business time
    history = [e for _, e in store.history(ada)]
    purchase = next(e for e in history if getattr(e, "order_id", None) == "o-11")
    active = next(e for e in history if getattr(e, "stage", None) == "active")
    assert active.causation_id == str(event_id(ada, purchase.originator_version))
    assert history[-1].correlation_id == f"policy-sweep:{utc_text(T0 + 200 * DAY)}"
    # re-running the reaction from the start and the sweep records nothing more
    with runner.checkpoints.transaction() as tx:  # type: ignore[union-attr]
        tx.execute("DELETE FROM policy_checkpoints")
    react(runner)
    assert runner.sweep(T0 + 200 * DAY).decisions == 0
    assert len(stages(store, ada)) == 5
    # a purchase after churn reactivates (the aggregate) and re-stages (the policy): six
    # purchases within a year make them loyal again
    buy(service, ada, 210)
    react(runner)
    assert stages(store, ada)[5:] == [
        ("customer.reactivated", None, "purchase", "clerk", 210),
        (
            "customer.lifecycle_stage_changed",
            "loyal",
            rule("loyal_sustained_purchasing"),
            ACTOR,
            210,
        ),
    ]


def test_two_sweeps_deciding_at_once_record_each_change_once(
    store: EventStore, service: CommandService, runner: LifecycleRunner
) -> None:
    bea = register(service, "Bea")
    buy(service, bea, 1, 5)
    policy = runner.policy()
    assert policy is not None
    history = next(runner.histories([bea]))
    version, first = runner.plan(history, T0 + 300 * DAY, policy)
    _, second = runner.plan(history, T0 + 300 * DAY, policy)  # both before either sends
    assert first == second and len(first) == 3  # active, at risk, churned
    for planned in (first, second):
        commands = [p.command(version + i) for i, p in enumerate(planned)]
        outcomes = service.execute_batch(commands, Context(actor=ACTOR))
        assert [o.problem for o in outcomes] == [None, None, None]
    assert [e.TYPE for _, e in store.history(bea)].count("customer.churned") == 1
    assert len(stages(store, bea)) == 4  # new (aggregate) + the three decisions, once


def test_a_manual_stage_holds_until_the_next_decision_point_and_says_who(
    store: EventStore, service: CommandService, runner: LifecycleRunner
) -> None:
    cy = register(service, "Cy")
    buy(service, cy, 1, 11)
    react(runner)
    service.execute(
        m.ChangeLifecycleStage(
            customer_id=cy, stage="loyal", reason="key account", occurred_at=T0 + 15 * DAY
        ),
        Context(actor="ana"),
    )
    assert runner.sweep(T0 + 30 * DAY).decisions == 0  # the manual stage holds
    runner.sweep(T0 + 45 * DAY)  # at risk 30 days after the last purchase (day 41)
    assert stages(store, cy)[1:] == [
        ("customer.lifecycle_stage_changed", "active", rule("active_repeat_purchases"), ACTOR, 11),
        ("customer.lifecycle_stage_changed", "loyal", "key account", "ana", 15),
        (
            "customer.lifecycle_stage_changed",
            "at_risk",
            rule("at_risk_after_inactivity"),
            ACTOR,
            41,
        ),
    ]


def test_a_policy_change_applies_from_its_effective_time(
    store: EventStore, service: CommandService, runner: LifecycleRunner
) -> None:
    dan = register(service, "Dan")
    buy(service, dan, 100, 110)
    react(runner)
    shorter = {
        "at_risk": {"gap_multiple": 1, "min_days": 5, "max_days": 20},
        "churned": {"gap_multiple": 2, "min_days": 6, "max_days": 30},
    }
    runner.policies.define("lifecycle", shorter, Context(actor="ops"), effective_at=T0 + 150 * DAY)
    # under v1 Dan is at risk from day 140 (30 days); v2 is not in force before day 150
    assert [p.view()["policy_version"] for p in runner.simulate(T0 + 145 * DAY)] == [1]
    runner.sweep(T0 + 145 * DAY)
    # from day 150, v2: churned 20 days after the last purchase (day 130) has long passed
    runner.sweep(T0 + 160 * DAY)
    assert stages(store, dan)[2:] == [
        (
            "customer.lifecycle_stage_changed",
            "at_risk",
            rule("at_risk_after_inactivity"),
            ACTOR,
            140,
        ),
        ("customer.churned", None, rule("churned_after_inactivity", 2), ACTOR, 150),
    ]


def test_the_policy_process_sweeps_then_reacts_to_purchases_as_they_are_recorded(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_url, api_keys_file=tmp_path / "keys.json")
    with build(settings) as services, policy_runner(services) as process:
        services.policies.define("lifecycle", {}, Context(actor="ops"), effective_at=T0)
        eve = register(services.commands, "Eve")
        buy(services.commands, eve, 1, 3)
        assert isinstance(process.foreground, LifecycleRunner)
        process.foreground.poll_interval = 0.05

        def wait_for(count: int) -> list[tuple[Any, ...]]:
            deadline = time.monotonic() + 20
            while len(stages(services.store, eve)) < count and time.monotonic() < deadline:
                time.sleep(0.05)
            return [s[1:3] for s in stages(services.store, eve)]

        thread = threading.Thread(target=process.run, daemon=True)
        thread.start()
        try:
            # the start-up sweep (as of now) and the reactions, in whichever order: active at
            # day 3, at risk from day 33, churned from day 93
            assert wait_for(4) == [
                ("new", "first_purchase"),
                ("active", rule("active_repeat_purchases")),
                ("at_risk", rule("at_risk_after_inactivity")),
                (None, rule("churned_after_inactivity")),
            ]
            # purchases while it runs: reactivated by the first, loyal by the fifth in a year
            buy(services.commands, eve, 200, 201, 202)
            assert wait_for(6)[4:] == [
                (None, "purchase"),
                ("loyal", rule("loyal_sustained_purchasing")),
            ]
        finally:
            process.stop()
            thread.join(10)
        assert not thread.is_alive() and process.foreground.position() > 0
