"""The lifecycle policy as a user runs it, in embedded and full mode: a policy PUT over HTTP,
purchases over HTTP, ``clientele policies run`` started beside ``serve`` (and, in full mode, the
relay and the consumers), and the stages it decides read back from the read models, with rule
and version in the customer's history."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.conftest import Server, Story, process


def test_the_policy_process_decides_stages_beside_the_other_processes(server: Server) -> None:
    story = Story(server)
    start = datetime.now(UTC) - timedelta(days=100)
    story.write(
        "PUT",
        "/v1/policies/lifecycle",
        who="admin",
        json={"document": {}, "effective_at": start.isoformat()},
    )
    body = {"name": "Ada", "occurred_at": start.isoformat()}
    cid = story.write("POST", "/v1/customers", expect=201, json=body)["customer_id"]
    for day in (1, 6):
        purchase = {
            "order_id": f"o-{day}",
            "amount": "5.00",
            "currency": "EUR",
            "occurred_at": (start + timedelta(days=day)).isoformat(),
        }
        story.write("POST", f"/v1/customers/{cid}/purchases", json=purchase)
    log = server.log.parent / "policies.log"
    with process(server.env, log, "policies", "run") as runner:
        deadline = time.monotonic() + 90
        profile: dict[str, Any] = story.read(f"/v1/customers/{cid}")
        while profile["lifecycle_stage"] != "churned" and time.monotonic() < deadline:
            assert runner.poll() is None, log.read_text()
            time.sleep(0.5)
            profile = story.read(f"/v1/customers/{cid}")
    assert (profile["lifecycle_stage"], profile["status"]) == ("churned", "churned"), profile
    assert "deciding lifecycle stages" in log.read_text()
    # the history read model is fed on its own: wait for it as for the profile
    deadline = time.monotonic() + 60
    while len(decided := decisions(story, cid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert decided == [
        ("customer.lifecycle_stage_changed", "policy lifecycle v1, rule active_repeat_purchases"),
        ("customer.lifecycle_stage_changed", "policy lifecycle v1, rule at_risk_after_inactivity"),
        ("customer.churned", "policy lifecycle v1, rule churned_after_inactivity"),
    ]


def decisions(story: Story, cid: str) -> list[tuple[str, str]]:
    """(type, reason) of the policy's events in the customer's history."""
    history = story.read(f"/v1/customers/{cid}/history", who="auditor")["items"]
    return [
        (item["type"], item["data"]["reason"])
        for item in history
        if item["actor"] == "clientele:policy-lifecycle"
    ]
