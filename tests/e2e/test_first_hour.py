"""Issue 14 items 4 and 6 as a newcomer meets them, with real processes: ``serve`` answers at
once while the read models catch up on a large backlog, a busy port is one clear line, and
the README's curl examples paste and run as they are."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from bootstrap import build
from consumers.migrate import migrate
from infra.local_services import free_port
from infra.settings import Settings
from tests.backlog_support import write_backlog
from tests.e2e.conftest import CLIENTELE, Server, clientele, process

pytestmark = pytest.mark.e2e
README = Path(__file__).parents[2] / "README.md"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "CLIENTELE_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'clientele.db'}",
        "CLIENTELE_API_KEYS_FILE": str(tmp_path / "var" / "api-keys.json"),
    }
    env.pop("CLIENTELE_KAFKA_BOOTSTRAP", None)
    yield env


def test_a_busy_port_is_one_clear_line(home: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [CLIENTELE, "serve", "--port", str(port)],
            env=home,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: port {port} on 127.0.0.1 is already in use (another clientele "
        f"serve?): pick another with --port, e.g. `make run PORT={port + 1}`"
    ]


def _wait(url: str, child: subprocess.Popen[bytes], log: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 60:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        assert child.poll() is None, log.read_text()
        time.sleep(0.05)
    pytest.fail(f"no answer from {url}:\n{log.read_text()}")


def test_serve_answers_while_the_read_models_catch_up(home: dict[str, str], tmp_path: Path) -> None:
    settings = Settings(
        database_url=home["CLIENTELE_DATABASE_URL"], api_keys_file=tmp_path / "keys.json"
    )
    services = build(settings)
    try:
        migrate(services)
        written = write_backlog(services.commands, 1_000, 39)  # 40,000 events, none applied
        head = services.store.head()
    finally:
        services.close()
    token = clientele(home, "keys", "create", "ops", "--role", "reader").strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with process(home, log, "serve", "--port", str(port)) as child:
        # serve listens at once (healthz) and opens its services in the background; readyz
        # answers 200 as soon as they answer, while the read models still catch up
        _wait(f"{base}/healthz", child, log)
        _wait(f"{base}/readyz", child, log)
        ready = httpx.get(f"{base}/readyz", timeout=10)
        status = httpx.get(f"{base}/projections", timeout=10).json()
        read = httpx.get(f"{base}/v1/customers", headers=auth, timeout=10)
        assert ready.status_code == 200 and ready.json()["state"] == "catching_up"
        assert status["state"] == "catching_up" and status["catch_up"]["head"] == head
        assert all(row["lag"] > 10_000 for row in status["projections"]), status
        assert read.status_code == 200

        deadline = time.monotonic() + 240
        while httpx.get(f"{base}/readyz", timeout=10).json()["state"] != "live":
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        while "embedded_runner.caught_up" not in log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        live = httpx.get(f"{base}/v1/customers", headers={**auth, "X-Min-Position": str(head)})
        assert live.status_code == 200 and live.json()["items"]
        time.sleep(1.5)  # idle: the runner polls, and says nothing about it
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines if line.get("logger") == "consumers.catch_up"]
    assert events[0] == "embedded_runner.catching_up" and events[-1] == "embedded_runner.caught_up"
    assert set(events[1:-1]) <= {"embedded_runner.catch_up_progress"}
    started = next(line for line in lines if line["event"] == "embedded_runner.catching_up")
    assert started["backlog"] == written and started["head"] == head
    done = next(line for line in lines if line["event"] == "embedded_runner.caught_up")
    assert done["applied"] == written
    store_line = f"store: {home['CLIENTELE_DATABASE_URL']} (from CLIENTELE_DATABASE_URL)"
    assert store_line in log.read_text()


def _quick_start() -> str:
    text = README.read_text()
    block = re.search(r"Try it from a second shell.*?```sh\n(.*?)```", text, re.S)
    assert block is not None, "README lost its quick-start curl block"
    return block.group(1)


def test_the_readme_curl_examples_paste_and_run(embedded_server: Server, tmp_path: Path) -> None:
    script = _quick_start()
    assert all(len(line) <= 90 for line in script.splitlines()), "keep lines short: no wrapping"
    assert "<" not in script.replace("<<", ""), "no <placeholders> to edit by hand"
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "dev-api-key").write_text(embedded_server.tokens["admin"] + "\n")
    ran = subprocess.run(
        [
            "bash",
            "-euo",
            "pipefail",
            "-c",
            script.replace("http://127.0.0.1:8000", embedded_server.base_url),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    out = ran.stdout.splitlines()
    written = orjson.loads(out[0])
    assert set(written) == {"customer_id", "version", "position", "existing", "possible_duplicates"}
    assert written["existing"] is False
    assert orjson.loads(out[1])["name"] == "Ada Lovelace"
    assert orjson.loads(out[2])["version"] == 1
    assert orjson.loads(out[3])["results"][0]["status"] == "accepted"
