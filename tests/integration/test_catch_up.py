"""Issue 14 item 4: the API answers while the embedded read models catch up on a backlog, and
every lag is exact (``projections status`` showed 10,000 when 94,280 events waited)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.cli import app as cli
from api.http.app import create_app
from bootstrap import build
from consumers.catch_up import CATCH_UP_EVENTS
from consumers.embedded import EmbeddedRunner, catch_up_read_models
from consumers.migrate import migrate
from consumers.status import pipeline_report
from infra.api_keys import KeyStore, Role
from infra.settings import Settings, get_settings
from projections.registry import all_projectors
from tests.backlog_support import write_backlog

pytestmark = pytest.mark.integration
CUSTOMERS = 500


def _settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, api_keys_file=tmp_path / "keys.json")


def test_lag_is_exact_above_ten_thousand(database_url: str, tmp_path: Path) -> None:
    services = build(_settings(database_url, tmp_path))
    try:
        migrate(services)
        written = write_backlog(services.commands, CUSTOMERS, 21)  # 11,000 events
        report = pipeline_report(services)
        assert written == 11_000
        assert [row["lag"] for row in report["projections"]] == [written] * len(all_projectors())
        assert {row["state"] for row in report["projections"]} == {"catching_up"}
        assert report["state"] == "catching_up" and services.runner is not None
        assert services.runner.backlog() == written

        applied = catch_up_read_models(services, on_batch=lambda n: None)
        report = pipeline_report(services)
    finally:
        services.close()
    assert applied == written
    assert [(row["lag"], row["state"]) for row in report["projections"]] == [(0, "live")] * len(
        all_projectors()
    )


def test_a_catch_up_after_the_runner_stopped_goes_on_to_the_head(
    database_url: str, tmp_path: Path
) -> None:
    """A stopped runner's catch-up used to leave after one batch (the stop meant for its
    thread), so a test's (or a caller's) catch-up after ``stop`` silently fell short."""
    services = build(_settings(database_url, tmp_path))
    try:
        migrate(services)
        runner = EmbeddedRunner(services.feed, services.read_store, all_projectors(), batch_size=3)
        runner.start()
        runner.stop()
        written = write_backlog(services.commands, 4, 2)
        assert runner.catch_up() == written
        assert runner.backlog() == 0
    finally:
        services.close()


def test_projections_status_reports_the_exact_backlog_then_catch_up_clears_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CLIENTELE_DATABASE_URL", url)
    monkeypatch.setenv("CLIENTELE_LOG_JSON", "false")
    get_settings.cache_clear()
    services = build()
    try:
        migrate(services)
        written = write_backlog(services.commands, CUSTOMERS, 21)
    finally:
        services.close()
    runner = CliRunner()
    status = runner.invoke(cli, ["projections", "status"])
    assert status.exit_code == 0, status.output
    assert _rows(status.output) == [["0", f"{written:,}", "catching_up"]] * 4
    caught = runner.invoke(cli, ["projections", "catch-up"])
    assert caught.exit_code == 0, caught.output
    assert f"{written:,} events applied" in " ".join(caught.output.split())
    again = runner.invoke(cli, ["projections", "status"])
    assert _rows(again.output) == [[f"{written:,}", "0", "live"]] * 4
    get_settings.cache_clear()


def _rows(table: str) -> list[list[str]]:
    """(position, lag, state) of each projection in ``projections status``'s table."""
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines()]
    return [
        row[1:4]
        for row in cells
        if row and row[0] in {"profiles", "audit", "analytics", "segments"}
    ]


def test_the_api_answers_while_the_read_models_catch_up(tmp_path: Path) -> None:
    settings = _settings(f"sqlite:///{tmp_path / 'big.db'}", tmp_path)
    token = KeyStore(settings.api_keys_file).create("ops", [Role.READER])[1]
    auth = {"Authorization": f"Bearer {token}"}
    services = build(settings)
    migrate(services)
    written = write_backlog(services.commands, 1_000, 29)  # 30,000 events
    head = services.store.head()
    with TestClient(create_app(services)) as client:
        started = time.monotonic()
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        status = client.get("/projections").json()
        listed = client.get("/v1/customers", headers=auth, params={"limit": 5})
        waited = client.get("/v1/customers", headers={**auth, "X-Min-Position": str(head)})
        answered = time.monotonic() - started
        assert ready.status_code == 200 and ready.json()["state"] == "catching_up"
        assert status["state"] == "catching_up"
        assert status["catch_up"]["state"] == "catching_up"
        assert status["catch_up"]["head"] == head
        assert all(CATCH_UP_EVENTS <= row["lag"] <= written for row in status["projections"])
        assert listed.status_code == 200  # read models as they are
        assert waited.status_code == 503 and waited.json()["type"] == "/problems/not-caught-up"
        assert answered < 10, answered

        deadline = time.monotonic() + 180
        while client.get("/readyz").json()["state"] != "live" and time.monotonic() < deadline:
            time.sleep(0.2)
        while services.runner is not None and services.runner.progress().state != "live":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        done = client.get("/projections").json()
        assert [row["lag"] for row in done["projections"]] == [0] * len(all_projectors())
        assert done["state"] == "live" and done["catch_up"]["applied"] == written
        fresh = client.get("/v1/customers", headers={**auth, "X-Min-Position": str(head)})
        assert fresh.status_code == 200 and fresh.json()["items"]
