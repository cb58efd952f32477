"""``clientele campaigns``: create from a JSON file (errors name the field), launch with
progress, results as JSON, export the audience as CSV or JSONL; an erased customer leaves the
export but keeps counting in the results."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from api.cli import app
from bootstrap import build
from commands import messages as m
from commands.service import Context
from consumers.campaign_launch import LaunchProgress

runner = CliRunner()
SPEC: dict[str, Any] = {
    "name": "Spring sale",
    "purpose": "email_marketing",
    "channel": "email",
    "audience": {"segment": "everyone"},
    "control_fraction": "0.3",
}


def base(count: int) -> list[str]:
    ctx = Context(actor="test")
    with build() as services:
        ids = []
        for index in range(count):
            cid = services.commands.execute(m.RegisterCustomer(name=f"C{index}"), ctx).customer_id
            consent = m.SetConsent(customer_id=cid, purpose="email_marketing", granted=True)
            services.commands.execute(consent, ctx)
            ids.append(str(cid))
        rule = {"field": "status", "op": "eq", "value": "active"}
        services.segments.define("everyone", "Everyone", rule, None, ctx)
    return ids


def test_create_launch_results_export(database: str, tmp_path: Path) -> None:
    ids = base(20)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SPEC, "channel": "fax"}))
    refused = runner.invoke(app, ["campaigns", "create", str(bad)])
    assert refused.exit_code == 2 and "channel" in refused.output
    good = tmp_path / "spring.json"
    good.write_text(json.dumps(SPEC))
    created = runner.invoke(app, ["campaigns", "create", str(good)])
    assert created.exit_code == 0, created.output
    campaign_id = json.loads(created.stdout)["campaign_id"]

    launched = runner.invoke(app, ["campaigns", "launch", campaign_id])
    assert launched.exit_code == 0, launched.output
    counts = json.loads(launched.stdout[launched.stdout.index("{") :])
    assert counts["audience"] == 20 and counts["treatment"] + counts["control"] == 20
    with build() as services:  # the position reached: the launch's last write
        assert counts["position"] == services.store.head() > counts["launch_position"]

    exported = runner.invoke(app, ["campaigns", "export", campaign_id, "--group", "all"])
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert sorted(r["customer_id"] for r in rows) == sorted(ids)
    treated = [r["customer_id"] for r in rows if r["group"] == "treatment"]
    assert len(treated) == counts["treatment"]

    with build() as services:
        erase = m.EraseCustomer(customer_id=UUID(treated[0]))
        services.commands.execute(erase, Context(actor="t"))
    out = tmp_path / "audience.jsonl"
    runner.invoke(app, ["campaigns", "export", campaign_id, "--format", "jsonl", "-o", str(out)])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["customer_id"] for line in lines} == set(treated[1:])

    results = runner.invoke(app, ["campaigns", "results", campaign_id])
    assert results.exit_code == 0, results.output
    assert json.loads(results.stdout)["groups"]["treatment"]["size"] == counts["treatment"]
    missing = runner.invoke(app, ["campaigns", "results", "not-an-id"])
    assert missing.exit_code == 2 and "UUID" in missing.output


def test_launch_due_launches_scheduled_campaigns_whose_time_has_come(
    database: str, tmp_path: Path
) -> None:
    base(3)
    ctx = Context(actor="test")
    with build() as services:
        due, _ = services.campaigns.create({**SPEC, "scheduled_at": "2020-01-01T00:00:00Z"}, ctx)
        services.campaigns.change(
            due.id, ctx, lambda c, meta: c.schedule(datetime(2020, 1, 1, tzinfo=UTC), meta)
        )
        later, _ = services.campaigns.create(SPEC, ctx)
        services.campaigns.change(
            later.id, ctx, lambda c, meta: c.schedule(datetime(2999, 1, 1, tzinfo=UTC), meta)
        )
    done = runner.invoke(app, ["campaigns", "launch-due"])
    assert done.exit_code == 0, done.output
    launched = json.loads(done.stdout[done.stdout.index("{") :])
    assert list(launched) == [str(due.id)] and launched[str(due.id)]["audience"] == 3
    with build() as services:
        assert services.campaigns.get(later.id).status == "scheduled"


def test_a_stopped_launch_resumes_at_its_position_and_targets_nobody_twice(database: str) -> None:
    ids = base(12)
    ctx = Context(actor="test")

    class Stop(Exception):
        pass

    def stop_after_first_batch(progress: LaunchProgress) -> None:
        raise Stop(progress.done)

    with build() as services:
        campaign, _ = services.campaigns.create(SPEC, ctx)
        launcher = services.launcher
        launcher.batch_size = 5
        with pytest.raises(Stop):
            launcher.launch(campaign.id, ctx, stop_after_first_batch)
        stopped = services.campaigns.get(campaign.id)
        assert stopped.status == "launching" and stopped.launch is not None
        services.commands.execute(m.RegisterCustomer(name="Late"), ctx)  # after the position
        counts = launcher.launch(campaign.id, ctx)
        assert counts["launch_position"] == stopped.launch["position"]
        assert counts["audience"] == 12
        assert counts["treatment"] + counts["control"] == 12
        for cid in ids:
            events = [
                e for e in services.store.customer_events(UUID(cid)) if e.TYPE.endswith("targeted")
            ]
            assert len(events) == 1
