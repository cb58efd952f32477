"""Scheduled campaigns launch by themselves: two schedulers at once on PostgreSQL (each in its
own services, as two policy runners would be) launch a due campaign once and target each
member once, by their injected business clock; a campaign that cannot launch is deferred
without holding up the others; and ``serve`` (embedded) launches a campaign at its time with
no one asking."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from bootstrap.policy_processes import policy_runner
from bootstrap.services import build
from commands import messages as m
from commands.service import Context
from consumers.campaign_schedule import CampaignScheduler
from consumers.embedded import catch_up_read_models
from infra.settings import Settings
from tests.api_support import running_api

CUSTOMERS = 120
CTX = Context(actor="schedule-test")
AT = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
SPEC: dict[str, Any] = {
    "name": "Spring",
    "purpose": "email_marketing",
    "channel": "email",
    "audience": {"segment": "everyone"},
    "control_fraction": "0.2",
}


@pytest.mark.integration
def test_two_schedulers_launch_a_due_campaign_once(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=postgres_url, api_keys_file=tmp_path / "keys.json")
    with build(settings) as services:
        ids: list[UUID] = []
        for index in range(CUSTOMERS):
            outcome = services.commands.execute(m.RegisterCustomer(name=f"C{index}"), CTX)
            assert outcome.customer_id is not None
            ids.append(outcome.customer_id)
        services.commands.execute_batch(
            [m.SetConsent(customer_id=c, purpose="email_marketing", granted=True) for c in ids],
            CTX,
        )
        rule = {"field": "status", "op": "eq", "value": "active"}
        services.segments.define("everyone", "Everyone", rule, None, CTX)
        due = services.campaigns.create({**SPEC, "scheduled_at": AT.isoformat()}, CTX)[0].id
        services.campaigns.change(due, CTX, lambda c, meta: c.schedule(AT, meta))
        broken = services.campaigns.create({**SPEC, "audience": {"segment": "nobody"}}, CTX)[0]
        services.campaigns.change(broken.id, CTX, lambda c, meta: c.schedule(AT, meta))
        later = services.campaigns.create(SPEC, CTX)[0].id
        services.campaigns.change(later, CTX, lambda c, meta: c.schedule(AT + timedelta(1), meta))
        catch_up_read_models(services)
        early = CampaignScheduler(services.launcher, clock=lambda: AT - timedelta(seconds=1))
        assert early.tick() == {}
        assert services.campaigns.get(due).status == "scheduled"

    start = threading.Barrier(2)
    ticks: list[dict[str, dict[str, Any]]] = []
    failures: list[BaseException] = []

    def run_scheduler() -> None:
        try:
            with build(settings) as mine:
                launcher = mine.launcher
                launcher.batch_size = 10  # small batches: the two interleave
                start.wait(timeout=30)
                ticks.append(CampaignScheduler(launcher, clock=lambda: AT).tick())
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=run_scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures
    assert [set(tick) for tick in ticks] == [{str(due)}] * 2  # the broken one was deferred
    assert ticks[0] == ticks[1]
    with build(settings) as services:
        launched = services.campaigns.get(due)
        answer = ticks[0][str(due)]
        assert launched.status == "launched" and launched.outcome is not None
        assert launched.outcome == {
            **{k: v for k, v in answer.items() if k not in ("launch_position", "version")},
            "position": answer["launch_position"],
        }
        assert launched.version == 4  # created, scheduled, launch_started, launched: once each
        assert answer["version"] == 4
        assert answer["position"] == services.store.position_of(due, 4)  # the launch reached
        assert services.campaigns.get(broken.id).status == "scheduled"  # tried again next tick
        assert services.campaigns.get(later).status == "scheduled"
        counts = launched.outcome
        assert counts["audience"] == CUSTOMERS == counts["treatment"] + counts["control"]
        for cid in ids:  # registered, consented, targeted once
            customer = services.store.customer(cid)
            assert customer.version == 3 and set(customer.campaigns) == {str(due)}


def test_serve_launches_a_campaign_at_its_time(tmp_path: Path) -> None:
    with running_api(tmp_path, policies_in_serve=True, campaign_schedule_seconds=0.2) as api:
        writer, marketer = api.headers("writer"), api.headers("marketer")
        for _ in range(3):
            cid = api.client.post("/v1/customers", json={"name": "C"}, headers=writer).json()[
                "customer_id"
            ]
            api.client.put(
                f"/v1/customers/{cid}/consents/email_marketing",
                json={"granted": True},
                headers=writer,
            )
        rule = {"field": "status", "op": "eq", "value": "active"}
        api.client.put(
            "/v1/segments/everyone",
            json={"name": "Everyone", "rule": rule},
            headers=api.headers("admin"),
        )
        campaign = api.client.post("/v1/campaigns", json=SPEC, headers=marketer).json()
        at = datetime.now(UTC) + timedelta(seconds=1)
        scheduled = api.client.post(
            f"/v1/campaigns/{campaign['campaign_id']}/schedule",
            json={"at": at.isoformat()},
            headers=marketer,
        )
        assert scheduled.json()["status"] == "scheduled"
        deadline = time.monotonic() + 60
        while True:
            found = api.client.get(f"/v1/campaigns/{campaign['campaign_id']}", headers=marketer)
            if found.json()["status"] == "launched" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert found.json()["status"] == "launched", found.json()
        assert found.json()["counts"]["audience"] == 3
        assert datetime.fromisoformat(found.json()["launch"]["started_at"]) >= at


def test_the_policy_runner_process_launches_scheduled_campaigns(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        api_keys_file=tmp_path / "keys.json",
        campaign_schedule_seconds=5,
    )
    with build(settings) as services, policy_runner(services) as process:
        assert "launching scheduled campaigns every 5 s" in process.summary
        assert "campaigns" in {getattr(worker, "name", "") for worker in process.background}
