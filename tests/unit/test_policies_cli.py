"""``clientele policies``: load (TOML or JSON, every document checked first, errors naming the
file's field), show, simulate (lists what would change, changes nothing) and sweep."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from bootstrap import build
from commands import messages as m
from commands.service import Context

runner = CliRunner()
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=200)
POLICY = """
[lifecycle.at_risk]
gap_multiple = 2
min_days = 20
max_days = 60

[lifecycle.churned]
gap_multiple = 4
min_days = 40
max_days = 120
"""


def buyer(days: tuple[int, ...]) -> str:
    ctx = Context(actor="test")
    with build() as services:
        registered = m.RegisterCustomer(name="Ada", occurred_at=START)
        cid = services.commands.execute(registered, ctx).customer_id
        for day in days:
            purchase = m.RecordPurchase(
                customer_id=cid,
                order_id=f"o{day}",
                amount="9.50",
                currency="EUR",
                occurred_at=START + timedelta(days=day),
            )
            services.commands.execute(purchase, ctx)
    return str(cid)


def test_load_show_simulate_then_sweep(database: str, tmp_path: Path) -> None:
    policy = tmp_path / "policies.toml"
    policy.write_text(POLICY)
    at = START.isoformat()
    loaded = runner.invoke(app, ["policies", "load", str(policy), "--effective-at", at])
    assert loaded.exit_code == 0, loaded.output
    assert "lifecycle: version 1 (recorded)" in loaded.output
    again = runner.invoke(app, ["policies", "load", str(policy), "--effective-at", at])
    assert "lifecycle: version 1 (unchanged)" in again.output
    shown = runner.invoke(app, ["policies", "show", "lifecycle"])
    assert json.loads(shown.stdout)["document"]["at_risk"]["max_days"] == 60
    cid = buyer((1, 11))  # gap 10: at risk after 20 days (day 31), churned after 40 (day 51)
    with build() as services:
        head = services.store.head()
    until = (START + timedelta(days=40)).isoformat()
    simulated = runner.invoke(app, ["policies", "simulate", "--at", until, "--json"])
    assert simulated.exit_code == 0, simulated.output
    lines = [json.loads(line) for line in simulated.stdout.splitlines()]
    assert [(x["customer_id"], x["from"], x["to"], x["rule"]) for x in lines] == [
        (cid, "new", "active", "active_repeat_purchases"),
        (cid, "active", "at_risk", "at_risk_after_inactivity"),
    ]
    future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    told = runner.invoke(app, ["policies", "simulate", "--at", future])
    assert "3 stage changes would be made" in told.output
    assert (
        "new → active" in told.output
        and "(rule churned_after_inactivity, policy v1)" in told.output
    )
    with build() as services:
        assert services.store.head() == head  # simulations record nothing
    refused = runner.invoke(app, ["policies", "sweep", "--at", future])
    assert refused.exit_code == 2 and "--at: is in the future" in refused.output
    swept = runner.invoke(app, ["policies", "sweep", "--at", until])
    assert swept.exit_code == 0, swept.output
    assert "1 customers" in swept.output and "2 stage changes recorded" in swept.output
    swept = runner.invoke(app, ["policies", "sweep", "--at", until])
    assert "0 stage changes recorded" in swept.output


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p.toml", "[lifecycle.at_risk]\nmin_days = 'x'\n", "lifecycle.at_risk.min_days"),
        ("p.toml", "[lifecycle\n", "is not valid toml"),
        (
            "p.json",
            '{"lifecycle": {"churned": {"gap_multiple": 1, "min_days": 90, "max_days": 365}}}',
            "lifecycle.churned.gap_multiple: must be greater",
        ),
        ("p.json", '{"nope": {}}', "name: unknown policy 'nope'"),
        ("p.json", "[]", "must map policy names to documents, e.g. [lifecycle.at_risk]"),
        ("missing.json", None, "cannot read"),
    ],
)
def test_load_refuses_bad_files_naming_the_field(
    database: str, tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["policies", "load", str(path)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert runner.invoke(app, ["policies", "show", "lifecycle"]).exit_code == 2  # none stored


def test_simulate_needs_a_policy_and_a_zone(database: str) -> None:
    none = runner.invoke(app, ["policies", "simulate"])
    assert none.exit_code == 2 and "no policy is defined" in none.output
    naive = runner.invoke(app, ["policies", "simulate", "--at", "2026-01-01T00:00:00"])
    assert naive.exit_code == 2 and "time zone" in naive.output
