"""A process started while PostgreSQL or the broker is away waits for it (issue 17): it says
so in its log, ``serve`` answers 503 problem+json on ``/readyz`` meanwhile, and each one
starts its work once the dependency is back. No process exits; only a bad setting ends one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from infra.local_services import KafkaBroker, PostgresCluster, free_port
from tests.integration.kafka_support import Proc

pytestmark = pytest.mark.integration

# What each process prints once it runs (its summary; serve: /readyz answers 200).
STARTED = {
    "relay": "relaying from position",
    "consume": "consuming ",
    "ingest": "executing commands from",
    "policies": "deciding ",
}


@pytest.fixture
def stopped_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster made and then stopped: the processes start before it does."""
    data_dir = Path(tempfile.mkdtemp(prefix="clientele-late-pg-"))
    data_dir.chmod(0o755)
    server = PostgresCluster(data_dir / "pg", port=free_port(), fast=True)
    try:
        server.start()
        server.stop()
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def env_for(database_url: str, bootstrap: str) -> dict[str, str]:
    return {
        **os.environ,
        "CLIENTELE_DATABASE_URL": database_url,
        "CLIENTELE_KAFKA_BOOTSTRAP": bootstrap,
        "CLIENTELE_KAFKA_TOPIC_PREFIX": f"late{uuid4().hex[:6]}.",
        "CLIENTELE_DATABASE_TIMEOUT_SECONDS": "1",
        "CLIENTELE_BACKOFF_MAX_SECONDS": "1",
    }


def started(procs: dict[str, Proc], port: int | None, timeout: float) -> None:
    """Wait until every process runs its work (and ``serve``, if any, is ready)."""
    deadline = time.monotonic() + timeout
    waiting = set(procs)
    while waiting:
        for name in sorted(waiting):
            proc = procs[name]
            assert proc.process is not None and proc.process.poll() is None, (
                name,
                proc.log.read_text()[-3000:],
            )
            if name == "serve":
                try:
                    done = (
                        httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
                    )
                except httpx.HTTPError:
                    done = False
            else:
                done = STARTED[name] in proc.log.read_text()
            if done:
                waiting.discard(name)
        assert time.monotonic() < deadline, {n: procs[n].log.read_text()[-1500:] for n in waiting}
        time.sleep(0.3)


def test_processes_started_while_the_database_is_down_wait_for_it(
    stopped_cluster: PostgresCluster, broker: KafkaBroker, tmp_path: Path
) -> None:
    env = env_for(stopped_cluster.url, broker.bootstrap)
    port = free_port()
    commands = {
        "serve": ["serve", "--port", str(port)],
        "relay": ["relay"],
        "consume": ["consume"],
        "ingest": ["ingest"],
        "policies": ["policies", "run"],
    }
    procs = {name: Proc(args, env, tmp_path / f"{name}.log") for name, args in commands.items()}
    try:
        for proc in procs.values():
            proc.start()
        deadline = time.monotonic() + 60
        for name, proc in procs.items():
            while '"outage.waiting"' not in proc.log.read_text():
                assert proc.process is not None and proc.process.poll() is None, (
                    name,
                    proc.log.read_text()[-3000:],
                )
                assert time.monotonic() < deadline, (name, proc.log.read_text()[-3000:])
                time.sleep(0.3)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 503, ready.text
        assert ready.headers["content-type"] == "application/problem+json"
        assert ready.json()["dependencies"] == {"database": "down"}
        assert int(ready.headers["retry-after"]) > 0
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        write = httpx.post(
            f"http://127.0.0.1:{port}/v1/customers",
            json={"name": "A"},
            headers={"Authorization": "Bearer any-key"},  # checking it needs the database
            timeout=5,
        )
        assert write.status_code == 503 and write.json()["dependency"] == "database", write.text

        stopped_cluster.start()
        started(procs, port, timeout=120)
        for name, proc in procs.items():
            assert '"outage.ended"' in proc.log.read_text(), name
    finally:
        for proc in procs.values():
            proc.terminate()


def test_processes_started_while_the_broker_is_down_wait_for_it(
    postgres_url: str, tmp_path: Path
) -> None:
    late = KafkaBroker(tmp_path / "broker", free_port())
    env = env_for(postgres_url, late.bootstrap)
    procs = {
        name: Proc([name], env, tmp_path / f"{name}.log") for name in ("relay", "consume", "ingest")
    }
    try:
        for proc in procs.values():
            proc.start()
        time.sleep(8)  # started, importing, then waiting for the broker
        for name, proc in procs.items():
            assert proc.process is not None and proc.process.poll() is None, (
                name,
                proc.log.read_text()[-3000:],
            )
            assert STARTED[name] not in proc.log.read_text()
        late.start()
        started(procs, None, timeout=150)
    finally:
        for proc in procs.values():
            proc.terminate()
        late.stop()
