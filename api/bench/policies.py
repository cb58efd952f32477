"""The policy runner on PostgreSQL: sweep throughput over a whole base, and the lag from a
purchase to the decision it causes (docs/adr/0008, 0010).

The base: ``sizes.policy_customers`` customers registered 400 days ago with one to four
purchases over the last year (a third of them still new, the others due for an automatic
change), the ``lifecycle`` and ``loyalty`` policies in force since the registrations.

* **sweep**: each policy's ``sweep`` as of now over the whole base, timed twice: the first
  records every decision due (stage changes; points earned and expired, tiers), the second
  finds them recorded (the cost of deciding alone: what every periodic sweep pays). Reported
  in customers per second.
* **decision lag**: the policy runner runs as ``clientele policies run`` does (reacting to the
  store's log, woken by the store's notifications, else polling every ``poll_interval``
  seconds; its start-up sweep running beside), from checkpoints the sweeps above made current;
  a second purchase is recorded for a new customer (now due for ``active``) at a random
  moment, and the time until the stage change is in the store is measured, one purchase at a
  time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from api.bench import workload
from api.bench.harness import Sizes, Stack, summary
from bootstrap import Services, build
from bootstrap.policy_processes import policy_runner, policy_runners
from commands import messages as m
from commands.service import Context
from consumers.migrate import migrate

Say = Callable[[str], None]
DAY = timedelta(days=1)
LOYALTY = {"earn": {"EUR": "1"}, "expiry_days": 180, "tiers": {"EUR": {"silver": "100"}}}


def run(stack: Stack, sizes: Sizes, say: Say) -> dict[str, Any]:
    """Seed, then time the sweeps and the decision lag."""
    rng = random.Random(41)
    settings = stack.settings(stack.database("policies"))
    with build(settings) as services:
        migrate(services)
        if services.runner is not None:
            services.runner.stop()  # read models are not what is measured here
        customers = sizes.policy_customers
        say(f"policies: {customers:,} customers with a year of purchases …")
        fresh = _seed(services, customers, rng)
        sweeps = {}
        head = services.store.head()
        for runner in policy_runners(services):
            first = _timed(runner.sweep)
            again = _timed(runner.sweep)
            say(
                f"policies: {runner.name} sweep {customers / first[0]:,.0f} customers/s "
                f"({first[1].recorded:,} recorded), again {customers / again[0]:,.0f}/s"
            )
            runner.advance_to(head)  # the sweep decided all the base's events called for
            sweeps[runner.name] = {
                "customers": customers,
                "customers_per_s": customers / first[0],
                "recorded": first[1].recorded,
                "again_customers_per_s": customers / again[0],
                "again_recorded": again[1].recorded,
            }
        lag = _lag(services, fresh[: sizes.policy_lag_samples], rng, say)
    return {"policy_sweep": {"policies": sweeps}, "policy_lag": lag}


def _timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def _seed(services: Services, customers: int, rng: random.Random) -> list[UUID]:
    """The base (module docstring); returns the customers with one purchase, still ``new``."""
    now = datetime.now(UTC).replace(microsecond=0)
    since = now - 400 * DAY
    context = Context(actor="bench")
    services.policies.define("lifecycle", {}, context, effective_at=since)
    services.policies.define("loyalty", LOYALTY, context, effective_at=since)
    ids = [UUID(int=rng.getrandbits(128), version=4) for _ in range(customers)]
    commands: list[m.Command] = [
        m.RegisterCustomer(customer_id=c, name=f"Customer {c.hex[:6]}", occurred_at=since)
        for c in ids
    ]
    fresh = []
    for number, customer in enumerate(ids):
        bought = 1 if number % 3 == 0 else rng.randint(1, 4)
        # the new ones bought recently: no inactivity decision is due for them
        recent = number % 3 == 0
        for purchase in range(bought):
            back = rng.randint(1, 20) if recent else rng.randint(1, 365)
            commands.append(
                m.RecordPurchase(
                    customer_id=customer,
                    order_id=f"{number}-{purchase}",
                    amount=rng.choice(["9.99", "25.00", "49.90", "120.00"]),
                    currency="EUR",
                    occurred_at=now - back * DAY,
                )
            )
        if recent:
            fresh.append(customer)
    accepted = workload.run_batches(services.commands, commands)
    if accepted != len(commands):
        raise RuntimeError(f"policies seed: {len(commands) - accepted} commands rejected")
    return fresh


def _lag(services: Services, customers: list[UUID], rng: random.Random, say: Say) -> Any:
    """Purchase → stage change in the store, with the policy runner running (module
    docstring); in milliseconds."""
    lags: list[float] = []
    with policy_runner(services) as process:
        runner = process.foreground
        poll = getattr(runner, "poll_interval", None)
        thread = threading.Thread(target=process.run, name="bench-policy-runner", daemon=True)
        thread.start()
        try:
            for number, customer in enumerate(customers):
                time.sleep(rng.uniform(0, 0.5))  # a random phase of the poll
                command = m.RecordPurchase(
                    customer_id=customer,
                    order_id=f"lag-{number}",
                    amount="10.00",
                    currency="EUR",
                )
                started = time.perf_counter()
                outcome = services.commands.execute(command, Context(actor="bench"))
                if outcome.problem is not None:
                    raise RuntimeError(f"policy lag: {outcome.problem}")
                deadline = started + 30
                while services.store.customer(customer).lifecycle_stage != "active":
                    if time.perf_counter() > deadline:
                        raise TimeoutError("policy lag: no decision within 30 s")
                    time.sleep(0.002)
                lags.append((time.perf_counter() - started) * 1000)
        finally:
            process.stop()
            thread.join(30)
    found = summary(lags)
    say(f"policies: decision lag p50 {found['p50']:.0f} ms, p99 {found['p99']:.0f} ms")
    return {
        "samples": len(lags),
        "poll_interval_s": poll,
        "p50_ms": found["p50"],
        "p99_ms": found["p99"],
        "max_ms": found["max"],
    }
