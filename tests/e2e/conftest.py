"""End-to-end fixtures: ``clientele`` started as processes, exactly as a user would.

Embedded mode is one ``serve`` process on SQLite. Full mode is PostgreSQL and the Kafka-protocol
broker on loopback plus ``relay``, ``consume`` and ``serve`` processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from infra.local_services import KafkaBroker, PostgresCluster, free_port
from tests.integration.kafka_support import TEARDOWN_GRACE

CLIENTELE = str(Path(sys.executable).parent / "clientele")


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    tokens: dict[str, str]
    log: Path
    mode: str

    def headers(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", **extra}


def clientele(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [CLIENTELE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


@contextmanager
def process(env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as sink:
        child = subprocess.Popen(
            [CLIENTELE, *args], env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=log.parent
        )
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


@contextmanager
def served(mode: str) -> Iterator[Server]:
    home = Path(tempfile.mkdtemp(prefix=f"clientele-e2e-{mode}-"))
    home.chmod(0o755)  # PostgreSQL runs as its own user below it
    env = {
        **os.environ,
        "CLIENTELE_API_KEYS_FILE": str(home / "keys.json"),
        "CLIENTELE_DEFAULT_PHONE_REGION": "DE",
    }
    env.pop("CLIENTELE_KAFKA_BOOTSTRAP", None)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, home, ignore_errors=True)
        if mode == "full":
            postgres = PostgresCluster(home / "pg", free_port(), fast=True)
            broker = KafkaBroker(home / "broker", free_port())
            postgres.start()
            stack.callback(postgres.stop)
            broker.start()
            stack.callback(broker.stop, TEARDOWN_GRACE)
            env |= {
                "CLIENTELE_DATABASE_URL": postgres.url,
                "CLIENTELE_KAFKA_BOOTSTRAP": broker.bootstrap,
                "CLIENTELE_KAFKA_TOPIC_PREFIX": f"e2e{uuid4().hex[:6]}.",
            }
        else:
            env["CLIENTELE_DATABASE_URL"] = f"sqlite:///{home / 'var' / 'clientele.db'}"
        clientele(env, "migrate")
        tokens = {}
        for who, flags in {
            "admin": ["--role", "admin", "--pii"],
            "writer": ["--role", "writer"],
            "reader": ["--role", "reader", "--pii"],
            "auditor": ["--role", "auditor", "--pii"],
        }.items():
            tokens[who] = clientele(env, "keys", "create", who, *flags).strip().splitlines()[-1]
        if mode == "full":
            stack.enter_context(process(env, home / "relay.log", "relay"))
            stack.enter_context(process(env, home / "consume.log", "consume"))
        port = free_port()
        log = home / "serve.log"
        server = stack.enter_context(process(env, log, "serve", "--port", str(port)))
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, log.read_text()
            time.sleep(0.2)
        else:
            pytest.fail(f"clientele serve did not become ready:\n{log.read_text()}")
        yield Server(base_url, env, tokens, log, "kafka" if mode == "full" else "embedded")


class Story:
    """A tiny HTTP client that follows read-your-writes positions."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.base_url, timeout=15)
        self.position = 0

    def write(
        self, method: str, path: str, who: str = "writer", expect: int = 200, **kwargs: Any
    ) -> dict[str, Any]:
        response = self.http.request(
            method, path, headers=self.server.headers(who, **kwargs.pop("headers", {})), **kwargs
        )
        assert response.status_code == expect, (
            path,
            response.text,
            [line for line in self.server.log.read_text().splitlines() if "rror" in line][-3:],
        )
        body: dict[str, Any] = response.json()
        if response.is_success:
            assert response.headers["etag"] == f'"{body["version"]}"'
            self.position = max(self.position, body["position"])
        return body

    def read(self, path: str, who: str = "reader", expect: int = 200, **params: Any) -> Any:
        headers = self.server.headers(who, **{"X-Min-Position": str(self.position)})
        deadline = time.monotonic() + 90  # full mode: the first consumer-group join takes ~20 s
        response = self.http.get(path, headers=headers, params=params)
        while response.status_code == 503 and time.monotonic() < deadline:
            time.sleep(float(response.headers["retry-after"]))  # what a polite client does
            response = self.http.get(path, headers=headers, params=params)
        assert response.status_code == expect, (
            path,
            response.text,
            [line for line in self.server.log.read_text().splitlines() if "rror" in line][-3:],
        )
        return response.json()


@pytest.fixture(scope="module")
def embedded_server() -> Iterator[Server]:
    with served("embedded") as server:
        yield server


@pytest.fixture(scope="module", params=["embedded", "full"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with served(request.param) as server:
        yield server
