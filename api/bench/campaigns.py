"""Campaign launch scenario: audience members targeted per second on a generated base.

On fresh PostgreSQL (embedded transport): ``campaign_customers`` customers registered with
consent through the batch path, one segment holding them all, read models caught up. Then, on
the same base:

* **baseline**: a tag for every customer through ``CommandService.execute_batch`` in batches of
  500 — the same path, one customer event per member, no decision;
* **launch**: ``CampaignLauncher.launch`` of a campaign on the segment (10 % control): freezing
  the audience at the head, reading it from the membership history, and one
  ``customer.campaign_targeted`` per member decided on its aggregate (consent, frequency cap).

Members per second count the audience; the ratio launch ÷ baseline says what the decision and
the audience read cost over a plain write of the same events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from api.bench.harness import Sizes, Stack
from bootstrap import build
from commands import messages as m
from commands.service import Context
from consumers.embedded import catch_up_read_models
from consumers.migrate import migrate

CTX = Context(actor="bench")
SPEC: dict[str, Any] = {
    "name": "Bench",
    "purpose": "email_marketing",
    "channel": "email",
    "audience": {"segment": "everyone"},
}


def run(stack: Stack, sizes: Sizes, say: Callable[[str], None]) -> dict[str, Any]:
    count = sizes.campaign_customers
    with build(stack.settings(stack.database("campaigns"))) as services:
        migrate(services)
        say(f"campaigns: {count:,} customers with consent …")
        ids = [uuid4() for _ in range(count)]
        base: list[m.Command] = []
        for index, cid in enumerate(ids):
            base.append(m.RegisterCustomer(customer_id=cid, name=f"C{index}"))
            base.append(m.SetConsent(customer_id=cid, purpose="email_marketing", granted=True))
        _batches(services.commands.execute_batch, base)
        rule = {"field": "status", "op": "eq", "value": "active"}
        services.segments.define("everyone", "Everyone", rule, None, CTX)
        catch_up_read_models(services)
        say("campaigns: baseline (a tag per customer) …")
        started = time.perf_counter()
        _batches(
            services.commands.execute_batch, [m.TagCustomer(customer_id=c, tag="b") for c in ids]
        )
        baseline = time.perf_counter() - started
        catch_up_read_models(services)
        campaign, _ = services.campaigns.create(SPEC, CTX)
        say("campaigns: launch …")
        started = time.perf_counter()
        counts = services.launcher.launch(campaign.id, CTX)
        launch = time.perf_counter() - started
    members = counts["treatment"] + counts["control"]
    assert members == count, counts
    return {
        "customers": count,
        "members": members,
        "launch_seconds": round(launch, 2),
        "members_per_s": round(members / launch),
        "baseline_commands_per_s": round(count / baseline),
        "ratio": round(baseline / launch, 3),
    }


def _batches(
    execute: Callable[[list[m.Command], Context], list[Any]], commands: list[m.Command]
) -> None:
    for start in range(0, len(commands), 500):
        outcomes = execute(commands[start : start + 500], CTX)
        assert all(o.problem is None for o in outcomes)
