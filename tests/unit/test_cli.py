"""The ``clientele`` console script: help everywhere, CSV import, replay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from typer.testing import CliRunner

from api.cli import app
from infra.settings import get_settings
from infra.store import EventStore

runner = CliRunner()
COMMANDS = [
    ["serve"],
    ["migrate"],
    ["replay"],
    ["import"],
    ["import", "customers"],
    ["import", "purchases"],
]


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CLIENTELE_DATABASE_URL", url)
    monkeypatch.setenv("CLIENTELE_LOG_JSON", "false")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_help_lists_commands_and_every_command_has_help() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for name in ("serve", "migrate", "replay", "import"):
        assert name in top.output
    for command in COMMANDS:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, result.output
        if len(command) > 1 or command[0] not in (
            "import",
            "projections",
            "keys",
            "dev",
            "dlq",
            "segments",
        ):
            assert "Example" in result.output, command


def test_import_customers_reports_bad_rows_and_is_idempotent(database: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(
        "name,email,phone,tags,city\n"
        "Ada Lovelace,ADA@example.com,+44 20 7946 0958,VIP;Gold Member,London\n"
        ",nobody@example.com,,,\n"  # line 3: no name
        "Ada Twin,ada@example.com,,,\n"  # line 4: duplicate email (dedup)
        "Bob,bob@example.com,,!!!,\n"  # line 5: bad tag -> whole row rejected, nothing applied
        "Chloé,chloe@example.com,,,Paris\n",
        encoding="utf-8",
    )
    first = runner.invoke(app, ["import", "customers", str(csv_file)])
    assert first.exit_code == 1, first.output
    assert "2 imported, 0 unchanged, 3 rejected" in first.output
    for line in ("3", "4", "5"):
        assert line in first.output
    store = EventStore(database)
    try:
        registered = [n for n in store.notifications(0, 1000) if n.topic.endswith(":Registered")]
        assert len(registered) == 2
        head = store.head()
        again = runner.invoke(app, ["import", "customers", str(csv_file)])
        assert "0 imported, 2 unchanged, 3 rejected" in again.output
        assert store.head() == head
        ada = store.customer(UUID(str(registered[0].originator_id)))
        assert (ada.email, ada.tags, ada.attributes) == (
            "ada@example.com",
            ["vip", "gold-member"],
            {"city": "London"},
        )
    finally:
        store.close()


def test_import_rejects_unreadable_files(database: str, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["import", "customers", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "not a readable file" in missing.output
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = runner.invoke(app, ["import", "customers", str(empty)])
    assert result.exit_code == 2 and "no header row" in result.output
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = runner.invoke(app, ["import", "purchases", str(binary)])
    assert result.exit_code == 2 and "not UTF-8" in result.output


def test_replay_prints_the_timeline(database: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "one.csv"
    csv_file.write_text("name,tags\nAda,vip\n")
    assert runner.invoke(app, ["import", "customers", str(csv_file)]).exit_code == 0
    store = EventStore(database)
    customer_id = next(
        n.originator_id for n in store.notifications(0, 10) if n.topic.endswith(":Registered")
    )
    store.close()
    result = runner.invoke(app, ["replay", str(customer_id)])
    assert result.exit_code == 0, result.output
    assert "csv-import" in result.output and "tag=vip" in result.output
    lines = runner.invoke(app, ["replay", str(customer_id), "--json"]).output.splitlines()
    assert [json.loads(line)["type"] for line in lines] == [
        "customer.registered",
        "customer.tagged",
    ]
    early = runner.invoke(app, ["replay", str(customer_id), "--until", "2000-01-01T00:00:00+00:00"])
    assert early.exit_code == 1 and "no events by then" in early.output
    naive = runner.invoke(app, ["replay", str(customer_id), "--until", "2000-01-01T00:00:00"])
    assert naive.exit_code == 2


def test_projections_status_rebuild_verify(database: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("name,tags\n" + "".join(f"P{i},t{i % 3}\n" for i in range(40)))
    assert runner.invoke(app, ["import", "customers", str(csv_file)]).exit_code == 0
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    status = runner.invoke(app, ["projections", "status"])
    assert status.exit_code == 0 and "profiles" in status.output and "80" in status.output
    rebuilt = runner.invoke(app, ["projections", "rebuild", "profiles"])
    assert rebuilt.exit_code == 0 and "80 events" in rebuilt.output, rebuilt.output
    verified = runner.invoke(app, ["projections", "verify", "profiles"])
    assert verified.exit_code == 0 and "equals a rebuild" in verified.output
    unknown = runner.invoke(app, ["projections", "rebuild", "nope"])
    assert unknown.exit_code == 2 and "known: profiles" in unknown.output
