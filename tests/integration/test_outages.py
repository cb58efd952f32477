"""Outages are waited out, not crashed on (issue 17, items 1 and 6), against a PostgreSQL
cluster of this module's own that the tests stop and start (never the session's), and the
real broker.

* the API answers problem+json 503 with ``Retry-After`` while the database is down, logs
  each such request, reports it in ``/readyz`` and ``/metrics``, and serves again within
  seconds of its return without a stale-connection error;
* a relay and a projection consumer keep running through a PostgreSQL stop of 10 s and of
  60 s under a write load, and afterwards every stored event is in the read models exactly
  once and every read model equals a rebuild;
* idle ``clientele consume`` and ``ingest`` processes do not busy-loop, and hold no more
  connections than their pools allow.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from uuid import uuid4

import psutil
import psycopg
import pytest
from structlog.testing import capture_logs

from bootstrap import Services, build, processes
from commands.messages import RegisterCustomer, UpdateProfile
from commands.service import Context
from consumers.rebuild import rebuild
from infra.local_services import KafkaBroker, PostgresCluster, free_port
from infra.settings import Settings
from tests.api_support import running_api
from tests.integration.kafka_support import CLIENTELE
from tests.integration.test_kafka_full_mode import wait_until_converged

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster these tests may stop and start."""
    data_dir = Path(tempfile.mkdtemp(prefix="clientele-outage-pg-"))
    server = PostgresCluster(data_dir=data_dir, port=free_port(), fast=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def database(cluster: PostgresCluster) -> Iterator[str]:
    """A fresh database on ``cluster``; the cluster is running again afterwards."""
    url = cluster.create_database(f"o_{uuid4().hex[:12]}")
    yield url
    if not cluster.is_running():
        cluster.start()


def events(
    logs: Sequence[MutableMapping[str, Any]], name: str, **match: Any
) -> list[MutableMapping[str, Any]]:
    return [
        entry
        for entry in logs
        if entry["event"] == name and all(entry.get(k) == v for k, v in match.items())
    ]


def test_api_answers_503_during_a_database_outage_and_recovers(
    tmp_path: Path, cluster: PostgresCluster, database: str
) -> None:
    with running_api(tmp_path, database, database_timeout_seconds=1.0) as api:
        http = api.client
        created = http.post(
            "/v1/customers", json={"name": "Ada"}, headers=api.headers("writer+reader")
        )
        assert created.status_code == 201, created.text
        customer = created.json()["customer_id"]
        requests: list[tuple[str, str, dict[str, Any] | None, str]] = [
            ("GET", f"/v1/customers/{customer}", None, "/v1/customers/{customer_id}"),
            ("GET", "/v1/customers?q=Ada", None, "/v1/customers"),
            ("POST", "/v1/customers", {"name": "Grace"}, "/v1/customers"),
            (
                "PUT",
                f"/v1/customers/{customer}/tags/vip",
                None,
                "/v1/customers/{customer_id}/tags/{tag}",
            ),
            ("GET", "/v1/analytics/lifecycle", None, "/v1/analytics/lifecycle"),
        ]
        assert http.get("/readyz").json()["dependencies"] == {"database": "up"}

        cluster.stop()
        with capture_logs() as logs:
            for method, path, body, _ in requests:
                asked = time.monotonic()
                answer = http.request(method, path, json=body, headers=api.headers("writer+reader"))
                assert answer.status_code == 503, (path, answer.text)
                # waited for a connection once (1 s here), not once per retry of a library
                assert time.monotonic() - asked < 3, (path, time.monotonic() - asked)
                assert answer.headers["content-type"] == PROBLEM
                assert answer.json()["type"] == "/problems/unavailable"
                assert answer.json()["dependency"] == "database"
                assert int(answer.headers["retry-after"]) > 0
            ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["content-type"] == PROBLEM
        assert ready.json()["dependencies"] == {"database": "down"}
        assert "retry-after" in ready.headers
        logged = {(e["method"], e["route"]) for e in events(logs, "http.request", status=503)}
        assert {(m, route) for m, _, _, route in requests} <= logged  # routes, never paths
        assert 'clientele_dependency_up{dependency="database"} 0.0' in http.get("/metrics").text

        cluster.start()
        back = time.monotonic()
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() - back < 10, "the API did not see the database come back"
            time.sleep(0.2)
        # The read models too (the embedded runner waited the outage out).
        position = {"X-Min-Position": str(created.json()["position"])}
        while http.get(requests[0][1], headers=api.headers("reader", **position)).is_error:
            assert time.monotonic() - back < 15, "the read models did not catch up"
            time.sleep(0.2)
        # Every pooled connection from before the restart is stale by now: none may surface.
        for _ in range(4):
            for method, path, body, _ in requests:
                answer = http.request(method, path, json=body, headers=api.headers("writer+reader"))
                assert answer.is_success, (path, answer.status_code, answer.text)
        assert 'clientele_dependency_up{dependency="database"} 1.0' in http.get("/metrics").text

        cluster.stop()  # a restart no request sees: every pooled connection is stale after it
        cluster.start()
        for method, path, body, _ in requests:
            answer = http.request(method, path, json=body, headers=api.headers("writer+reader"))
            assert answer.is_success, (path, answer.status_code, answer.text)


def test_async_profile_reads_answer_503_during_an_outage_and_recover(
    tmp_path: Path, cluster: PostgresCluster, database: str
) -> None:
    """GET profile's async pool (:mod:`infra.async_reads`), warmed with connections that all
    go stale: 503 with ``Retry-After`` within the pool timeout while the database is down,
    then answers again, and after a restart no request meets a stale connection."""
    with running_api(tmp_path, database, database_timeout_seconds=1.0) as api:
        who = api.headers("writer+reader")
        created = api.client.post("/v1/customers", json={"name": "Ada"}, headers=who)
        path = f"/v1/customers/{created.json()['customer_id']}"
        position = {"X-Min-Position": str(created.json()["position"])}
        assert api.client.get(path, headers=api.headers("reader", **position)).is_success

        def warm() -> None:  # concurrent reads: the async pool holds several connections
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda _: api.client.get(path, headers=who), range(32)))
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers]

        warm()
        assert api.app.state.async_reads.stats()["connections_num"] >= 1
        cluster.stop()
        for _ in range(3):
            asked = time.monotonic()
            answer = api.client.get(path, headers=who)
            assert answer.status_code == 503, answer.text
            assert time.monotonic() - asked < 3
            assert answer.headers["content-type"] == PROBLEM
            assert answer.json()["dependency"] == "database"
            assert int(answer.headers["retry-after"]) > 0
        cluster.start()
        back = time.monotonic()
        while api.client.get(path, headers=who).status_code != 200:
            assert time.monotonic() - back < 10, "the async reads did not come back"
            time.sleep(0.2)
        warm()
        cluster.stop()  # a restart no request sees: every pooled connection is stale after it
        cluster.start()
        warm()


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (KeyError("a defect"), 500, "/problems/internal-error"),
        (sqlite3.OperationalError("database is locked"), 503, "/problems/unavailable"),
    ],
)
def test_an_error_no_route_expected_is_a_logged_problem_document(
    tmp_path: Path, error: Exception, status: int, kind: str
) -> None:
    def fails() -> None:
        raise error

    with running_api(tmp_path) as api:
        api.app.add_api_route("/v1/fails", fails)
        with capture_logs() as logs:
            answer = api.client.get("/v1/fails")
    assert answer.status_code == status
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["type"] == kind
    assert "a defect" not in answer.text  # the traceback goes to the log, not to the client
    assert events(logs, "http.request", route="/v1/fails", status=status)


class WriteLoad:
    """Registers a customer and updates it, again and again, in a thread; what the store
    acknowledged is kept, what failed (the database away) is tried no more."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.acknowledged: dict[str, int] = {}  # customer id -> newest acknowledged version
        self.failures = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="write-load", daemon=True)

    def _run(self) -> None:
        context = Context(actor="outage-test")
        while not self.stopping.wait(0.05):
            try:
                outcome = self.services.commands.execute(RegisterCustomer(name="Ada"), context)
                customer = outcome.customer_id
                self.acknowledged[str(customer)] = 1
                update = UpdateProfile(customer_id=customer, changes={"name": "Ada L."})
                self.acknowledged[str(customer)] = (
                    self.services.commands.execute(update, context).version or 0
                )
            except Exception:  # the database is away: this command's outcome is unknown
                self.failures += 1

    def __enter__(self) -> WriteLoad:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(10)


def read_models_match_store(services: Services) -> tuple[bool, str]:
    """Every customer event in the store is in the audit history exactly once (a position
    and a (customer, version) each at most once: the table's keys), and every profile is at
    its customer's newest version."""
    stored = services.store.customer_notifications(0, 1_000_000)
    newest: dict[str, int] = {}
    for n in stored:
        newest[str(n.originator_id)] = max(
            newest.get(str(n.originator_id), 0), n.originator_version
        )
    with services.read_store.transaction() as tx:
        audited = tx.fetchall("SELECT position FROM audit_events ORDER BY position")
        profiles: dict[str, int] = dict(tx.fetchall("SELECT customer_id, version FROM profiles"))
    positions = [int(row[0]) for row in audited]
    if positions != [n.id for n in stored]:
        return False, f"audit history has {len(positions)} events, the store {len(stored)}"
    if {k: int(v) for k, v in profiles.items()} != newest:
        return False, f"{len(profiles)} profiles for {len(newest)} customers, or old versions"
    return True, ""


@pytest.mark.parametrize("outage_seconds", [10, 60])
def test_relay_and_consumer_wait_out_a_database_outage_under_load(
    tmp_path: Path,
    cluster: PostgresCluster,
    database: str,
    broker: KafkaBroker,
    outage_seconds: int,
) -> None:
    settings = Settings(
        database_url=database,
        kafka_bootstrap=broker.bootstrap,
        kafka_topic_prefix=f"outage{uuid4().hex[:6]}.",
        api_keys_file=tmp_path / "keys.json",
        default_phone_region="DE",
        database_timeout_seconds=1.0,
        backoff_max_seconds=2.0,
    )
    with ExitStack() as stack, capture_logs() as logs:
        services = stack.enter_context(build(settings))
        running = [
            stack.enter_context(processes.relay(services)),
            stack.enter_context(processes.projection_consumer(services)),
        ]
        threads = [threading.Thread(target=p.run, daemon=True) for p in running]
        for thread in threads:
            thread.start()

        def stop() -> None:
            for process in running:
                process.stop()
            for thread in threads:
                thread.join(20)

        stack.callback(stop)
        with WriteLoad(services) as load:
            time.sleep(2)
            cluster.stop()
            time.sleep(outage_seconds)
            assert all(thread.is_alive() for thread in threads)
            cluster.start()
            time.sleep(2)
        assert load.failures > 0 and len(load.acknowledged) > 10, (load.failures, load.acknowledged)
        deadline = time.monotonic() + 45
        while not (verdict := read_models_match_store(services))[0]:
            assert time.monotonic() < deadline, verdict[1]
            time.sleep(0.5)
        # the rebuild below compares every projection: those following the store's log
        # (segments, …) too, which the verdict above does not look at
        wait_until_converged(services.store, services.read_store, [])
        assert all(thread.is_alive() for thread in threads)
        with services.read_store.transaction() as tx:
            seen: dict[str, int] = dict(tx.fetchall("SELECT customer_id, version FROM profiles"))
        for customer, version in load.acknowledged.items():
            assert int(seen[customer]) >= version
        for projector in services.projectors:  # live equals a rebuild from the store
            result = rebuild(services.feed, services.read_store, projector, verify_only=True)
            assert result.differences == [], projector.name
    for process in ("relay", "consumer clientele-projections"):
        waited = events(logs, "outage.waiting", process=process)
        ended = events(logs, "outage.ended", process=process)
        assert len(waited) >= 1 and len(ended) >= 1, (process, waited, ended)
        assert ended[0]["waited_seconds"] > 0


# Readiness (joined its consumer group: idle from then on) and most connections held with a
# pool size of 2 (README, "PostgreSQL connections per process").
IDLE = {
    "consume": ("consumer.assigned", 2 * 2 + 2),  # + relay tables made at start, LISTEN
    "ingest": ("Successfully joined group", 2 * 2),
}


def held_connections(database_url: str) -> int:
    with psycopg.connect(database_url) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_idle_consume_and_ingest_processes_do_not_busy_loop(
    tmp_path: Path, postgres: PostgresCluster, broker: KafkaBroker
) -> None:
    children: dict[str, tuple[subprocess.Popen[bytes], Path, str]] = {}
    try:
        for command in IDLE:
            database = postgres.create_database(f"idle_{command}_{uuid4().hex[:8]}")
            env = {
                **os.environ,
                "CLIENTELE_DATABASE_URL": database,
                "CLIENTELE_KAFKA_BOOTSTRAP": broker.bootstrap,
                "CLIENTELE_KAFKA_TOPIC_PREFIX": f"idle{uuid4().hex[:6]}.",
                "CLIENTELE_ENV_FILE": "",
                "CLIENTELE_POOL_SIZE": "2",
            }
            log = tmp_path / f"{command}.log"
            with log.open("ab") as sink:
                child = subprocess.Popen(
                    [CLIENTELE, command], env=env, stdout=sink, stderr=subprocess.STDOUT
                )
            children[command] = (child, log, database)
        deadline = time.monotonic() + 60
        for command, (child, log, _) in children.items():
            while IDLE[command][0] not in log.read_text():
                assert child.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        time.sleep(1)
        watched = {
            command: psutil.Process(child.pid) for command, (child, _, _) in children.items()
        }
        before, started = {c: p.cpu_times() for c, p in watched.items()}, time.monotonic()
        time.sleep(5)
        elapsed = time.monotonic() - started
        for command, process in watched.items():
            after = process.cpu_times()
            used = after.user + after.system - before[command].user - before[command].system
            assert used / elapsed < 0.05, f"an idle {command} used {used / elapsed:.1%} of a core"
            child, log, database = children[command]
            assert "periodic.ran" not in log.read_text()  # nothing done: nothing said at INFO
            assert 1 <= held_connections(database) <= IDLE[command][1], command
    finally:
        for child, _, _ in children.values():
            child.terminate()
            child.wait(20)
