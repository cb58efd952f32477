"""Sweeps that cannot decide twice, and the sweep inside ``serve``, on SQLite and PostgreSQL:

* two lifecycle sweeps running at once in real threads over the same base, then redelivery
  (the reaction checkpoint set back to the start and the log reacted to again) and a third
  sweep: every stage change is recorded exactly once, as an independent count says;
* ``serve`` in embedded mode runs the policy runner beside the API: a customer whose last
  purchase is long past is churned by the policy's periodic sweep, and a purchase recorded
  over HTTP is reacted to (reactivated), with nobody running ``clientele policies run``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from commands import messages as m
from commands.policies import PolicyService
from commands.service import CommandService, Context
from consumers.lifecycle_policy import ACTOR, LifecycleRunner
from infra.readstore import open_read_store
from infra.store import EventStore
from tests.api_support import running_api

DAY = timedelta(days=1)
T0 = datetime.now(UTC).replace(microsecond=0) - 400 * DAY
CLERK = Context(actor="clerk")
PEOPLE = 30


def automatic(store: EventStore, customer: UUID) -> list[tuple[str, str | None]]:
    """(type, stage) of the policy's events for ``customer``."""
    return [
        (e.TYPE, getattr(e, "stage", None)) for _, e in store.history(customer) if e.actor == ACTOR
    ]


def test_two_sweeps_at_once_then_redelivery_record_each_stage_change_once(
    store: EventStore, service: CommandService, database_url: str
) -> None:
    policies = PolicyService(store)
    policies.define("lifecycle", {}, Context(actor="ops"), effective_at=T0)
    people = []
    for i in range(PEOPLE):
        outcome = service.execute(m.RegisterCustomer(name=f"P{i}", occurred_at=T0), CLERK)
        assert outcome.customer_id is not None
        people.append(outcome.customer_id)
        days = [1, 5] if i % 3 else [1, 5, 20, 40, 60]  # 5 purchases in a year: loyal
        service.execute_batch(
            [
                m.RecordPurchase(
                    customer_id=outcome.customer_id,
                    order_id=f"o{d}",
                    amount="20.00",
                    currency="EUR",
                    occurred_at=T0 + d * DAY,
                )
                for d in days
            ],
            CLERK,
        )
    checkpoints = open_read_store(database_url, pool_size=1)
    try:
        runners = [
            LifecycleRunner(store, service, policies, checkpoints, batch_size=4) for _ in range(2)
        ]
        at = T0 + 300 * DAY
        threads = [threading.Thread(target=r.sweep, args=(at,)) for r in runners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)
        # redelivery: the reaction checkpoint is lost and every purchase reacted to again
        while runners[0].react_once():
            pass
        with checkpoints.transaction() as tx:
            tx.execute("UPDATE policy_checkpoints SET position = 0")
        while runners[1].react_once():
            pass
        runners[0].sweep(at)  # whatever a conflict left undecided
        assert runners[1].sweep(at).recorded == 0  # nothing is left, nothing twice
    finally:
        checkpoints.close()
    for i, person in enumerate(people):
        ladder = ("loyal",) if i % 3 == 0 else ("active",)  # the ladder: one step to its top
        expected = [
            *(("customer.lifecycle_stage_changed", stage) for stage in ladder),
            ("customer.lifecycle_stage_changed", "at_risk"),
            ("customer.churned", None),
        ]
        found = automatic(store, person)
        assert found == expected, (i, found)
        assert max(Counter(found).values()) == 1


def test_serve_sweeps_and_reacts_in_the_background(tmp_path: Path) -> None:
    with running_api(tmp_path, policies_in_serve=True, policy_sweep_seconds=1.0) as api:
        admin, writer = api.headers("admin"), api.headers("writer")
        api.client.put(
            "/v1/policies/lifecycle",
            json={"document": {}, "effective_at": T0.isoformat()},
            headers=admin,
        ).raise_for_status()
        body = {"name": "Ida", "occurred_at": T0.isoformat()}
        ida = api.client.post("/v1/customers", json=body, headers=writer).json()["customer_id"]
        purchase = {"order_id": "o1", "amount": "9.50", "currency": "EUR"}
        api.client.post(
            f"/v1/customers/{ida}/purchases",
            json=purchase | {"occurred_at": (T0 + DAY).isoformat()},
            headers=writer,
        ).raise_for_status()
        store = api.app.state.services.store

        def wait_for(wanted: tuple[str, str | None], who: str) -> list[tuple[str, str | None]]:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                found = automatic(store, UUID(who))
                if wanted in found:
                    return found
                time.sleep(0.1)
            raise AssertionError(f"no {wanted} from the sweep in serve: {found}")

        assert wait_for(("customer.churned", None), ida) == [
            ("customer.lifecycle_stage_changed", "at_risk"),
            ("customer.churned", None),
        ]
        body = {"name": "Jo", "occurred_at": (T0 + 390 * DAY).isoformat()}
        jo = api.client.post("/v1/customers", json=body, headers=writer).json()["customer_id"]
        for day in (395, 397):  # a repeat purchase while serve runs: active
            api.client.post(
                f"/v1/customers/{jo}/purchases",
                json=purchase
                | {"order_id": f"o{day}", "occurred_at": (T0 + day * DAY).isoformat()},
                headers=writer,
            ).raise_for_status()
        assert wait_for(("customer.lifecycle_stage_changed", "active"), jo) == [
            ("customer.lifecycle_stage_changed", "active")
        ]


def test_a_decision_refused_by_a_concurrent_change_is_decided_again_at_once(
    store: EventStore, service: CommandService, database_url: str
) -> None:
    """A reaction whose expected version another writer moved (here: a tag recorded between
    the plan and the send) is planned and sent again in the same step, not left for the
    next sweep (hours later)."""
    policies = PolicyService(store)
    policies.define("lifecycle", {}, Context(actor="ops"), effective_at=T0)

    class Racing(LifecycleRunner):
        raced = 0

        def _commands(self, *args: Any) -> list[m.Command]:
            commands = super()._commands(*args)
            if commands and not self.raced:
                self.raced += 1
                tag = m.TagCustomer(customer_id=commands[0].customer_id, tag="raced")
                assert service.execute(tag, CLERK).problem is None
            return commands

    outcome = service.execute(m.RegisterCustomer(name="Rae", occurred_at=T0), CLERK)
    rae = outcome.customer_id
    assert rae is not None
    for day in (1, 5):
        purchase = m.RecordPurchase(
            customer_id=rae,
            order_id=f"o{day}",
            amount="5.00",
            currency="EUR",
            occurred_at=T0 + day * DAY,
        )
        assert service.execute(purchase, CLERK).problem is None
    checkpoints = open_read_store(database_url, pool_size=1)
    try:
        runner = Racing(store, service, policies, checkpoints)
        report = runner.sweep(T0 + 10 * DAY)
    finally:
        checkpoints.close()
    assert runner.raced == 1
    assert (report.recorded, report.rejected) == (1, 0), report.problems
    assert automatic(store, rae) == [("customer.lifecycle_stage_changed", "active")]
