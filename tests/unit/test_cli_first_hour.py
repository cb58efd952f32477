"""Issue 14 item 6 from the command line: fast start (lazy imports), which store a command
used and where that came from (the settings file of ``dev up``), a curl that can be pasted,
and ``replay --json`` with its hash links."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from bootstrap import build
from consumers.status import pipeline_report
from infra.settings import DEV_SETTINGS_FILE, get_settings, redacted
from projections.registry import all_projectors

runner = CliRunner()
HEAVY = (
    "fastapi",
    "uvicorn",
    "kafka",
    "psycopg",
    "eventsourcing",
    "phonenumbers",
    "pycountry",
    "email_validator",
    "jsonschema",
    "cryptography",
)
LOADED = """
import sys
from typer.testing import CliRunner
from api.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
assert result.exit_code == 0, result.output
print(" ".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


@pytest.fixture
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory without CLIENTELE_* settings (as in a new shell)."""
    for name in ("CLIENTELE_DATABASE_URL", "CLIENTELE_KAFKA_BOOTSTRAP", "CLIENTELE_ENV_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLIENTELE_LOG_JSON", "false")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.mark.parametrize("command", [["--help"], ["keys", "list"], ["projections", "--help"]])
def test_light_commands_load_no_heavy_dependency(command: list[str], tmp_path: Path) -> None:
    """Each CLI call paid 1.5-2.7 s importing everything; measured in `clientele bench`."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED.format(heavy=HEAVY), *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).parents[2],
        env={"CLIENTELE_API_KEYS_FILE": str(tmp_path / "keys.json"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{command} imported {done.stdout}"


def test_a_command_says_which_store_it_used_and_where_that_was_set(clean: Path) -> None:
    default = runner.invoke(app, ["migrate"])
    assert default.exit_code == 0, default.output
    assert "store: sqlite:///./var/clientele.db (from default)" in default.output

    file_db = clean / "from-file.db"
    settings_file = clean / DEV_SETTINGS_FILE
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(f"# by dev up\nCLIENTELE_DATABASE_URL=sqlite:///{file_db}\n")
    get_settings.cache_clear()
    from_file = runner.invoke(app, ["migrate"])
    assert from_file.exit_code == 0, from_file.output
    assert f"store: sqlite:///{file_db} (from ./var/dev/clientele.env)" in from_file.output
    assert file_db.exists()
    assert from_file.output.count("store:") == 1

    env_db = clean / "from-env.db"
    get_settings.cache_clear()
    from_env = runner.invoke(
        app, ["migrate"], env={"CLIENTELE_DATABASE_URL": f"sqlite:///{env_db}"}
    )
    assert f"store: sqlite:///{env_db} (from CLIENTELE_DATABASE_URL)" in from_env.output
    assert env_db.exists()

    get_settings.cache_clear()
    ignored = runner.invoke(app, ["projections", "status"], env={"CLIENTELE_ENV_FILE": ""})
    assert "store: sqlite:///./var/clientele.db (from default)" in ignored.output


def test_passwords_are_not_shown() -> None:
    assert redacted("postgresql://app:s3cret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert (
        redacted("postgresql://postgres@127.0.0.1:5433/x")
        == "postgresql://postgres@127.0.0.1:5433/x"
    )
    assert redacted("sqlite:///./var/clientele.db") == "sqlite:///./var/clientele.db"


def test_the_dev_key_curl_can_be_pasted_in_a_narrow_terminal(clean: Path) -> None:
    result = runner.invoke(app, ["keys", "dev", "--port", "8080"], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    token = (clean / "var" / "dev-api-key").read_text().strip()
    assert token in lines  # on a line of its own, never broken
    start = next(i for i, line in enumerate(lines) if line.startswith("curl "))
    command = lines[start]
    while command.endswith("\\"):
        start += 1
        command = command[:-1] + lines[start]
    assert shlex.split(command) == [
        "curl",
        "-s",
        "http://127.0.0.1:8080/v1/customers",
        "-H",
        "Authorization: Bearer $(cat var/dev-api-key)",
    ]


def test_replay_json_carries_the_hash_chain(clean: Path) -> None:
    (clean / "one.csv").write_text("name,tags\nAda,vip\n")
    assert runner.invoke(app, ["import", "customers", "one.csv"]).exit_code == 0
    listed = runner.invoke(app, ["audit", "export"])
    customer = next(
        json.loads(line)["envelope"]["customer_id"]
        for line in listed.stdout.splitlines()
        if '"event"' in line
    )
    result = runner.invoke(app, ["replay", customer, "--json"])
    assert result.exit_code == 0, result.output
    envelopes = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["version"] for e in envelopes] == [1, 2]
    assert envelopes[0]["prev_hash"] == "0" * 64
    assert envelopes[1]["prev_hash"] == envelopes[0]["hash"]
    assert all(len(e["hash"]) == 64 for e in envelopes)
    assert envelopes[0]["data"]["name"] == "Ada"  # opened, as before


README = Path(__file__).parents[2] / "README.md"
REPO = Path(__file__).parents[2]


def _blocks(text: str) -> list[list[str]]:
    """The lines of each fenced code block."""
    parts = text.split("```")
    return [part.splitlines()[1:] for part in parts[1::2]]


def test_the_readme_says_how_to_get_the_command_before_using_it() -> None:
    """README's CLI table used a bare `clientele` that is not on PATH."""
    text = README.read_text()
    quick_start = text[: text.index("## HTTP API")]
    for how in ("source .venv/bin/activate", ".venv/bin/clientele", 'make cli ARGS="'):
        assert how in quick_start, how
    for block in _blocks(text):
        commands = [line for line in block if re.match(r"\s*clientele\s", line)]
        if commands:  # a block to paste activates the environment first
            assert block[0] == "source .venv/bin/activate", block
        assert not any(line.lstrip().startswith(".venv/bin/clientele") for line in block)


def test_make_run_takes_a_port_and_a_host() -> None:
    planned = subprocess.run(
        ["make", "-n", "run", "PORT=8081", "HOST=0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO,
    ).stdout
    assert "clientele serve --host 0.0.0.0 --port 8081" in planned
    assert "clientele keys dev --port 8081" in planned
    cli = subprocess.run(
        ["make", "-n", "cli", "ARGS=projections status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO,
    ).stdout
    assert ".venv/bin/clientele projections status" in cli


def test_an_import_leaves_the_read_models_caught_up(clean: Path) -> None:
    """After an import, `serve` caught up on every event first (49 s on a real base)."""
    (clean / "people.csv").write_text("name,tags\n" + "".join(f"P{i},t{i}\n" for i in range(30)))
    assert runner.invoke(app, ["import", "customers", "people.csv"]).exit_code == 0
    get_settings.cache_clear()
    services = build()
    try:
        report = pipeline_report(services)
    finally:
        services.close()
    assert [row["lag"] for row in report["projections"]] == [0] * len(all_projectors())
    assert all(row["position"] >= 60 for row in report["projections"])  # 30 x register + tag
