"""End-to-end fixtures: ``clientele`` started as a process, exactly as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from infra.local_services import free_port

CLIENTELE = str(Path(sys.executable).parent / "clientele")


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    tokens: dict[str, str]
    log: Path

    def headers(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", **extra}


def clientele(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [CLIENTELE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``clientele serve`` on the embedded default (SQLite under a temp dir)."""
    home = tmp_path_factory.mktemp("served")
    env = {
        **os.environ,
        "CLIENTELE_DATABASE_URL": f"sqlite:///{home / 'var' / 'clientele.db'}",
        "CLIENTELE_API_KEYS_FILE": str(home / "var" / "keys.json"),
        "CLIENTELE_DEFAULT_PHONE_REGION": "DE",
    }
    env.pop("CLIENTELE_KAFKA_BOOTSTRAP", None)
    tokens = {}
    for who, flags in {
        "admin": ["--role", "admin", "--pii"],
        "writer": ["--role", "writer"],
        "reader": ["--role", "reader", "--pii"],
        "auditor": ["--role", "auditor", "--pii"],
    }.items():
        tokens[who] = clientele(env, "keys", "create", who, *flags).strip().splitlines()[-1]
    port = free_port()
    log = home / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [CLIENTELE, "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=home,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None, log.read_text()
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"clientele serve did not become ready:\n{log.read_text()}")
    yield Server(base_url, env, tokens, log)
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
