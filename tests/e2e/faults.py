"""Fault injection on full mode, as deployed (issue 17): one harness for the CI test
(``tests/e2e/test_faults.py``, a few injections) and ``make reliability`` (``python -m
tests.e2e.reliability``, >= 100 injections, writes ``RELIABILITY.md``).

A throwaway PostgreSQL and tansu broker on loopback, and ``clientele serve``, ``relay``,
``consume`` and ``ingest`` started as a user does. Under continuous mixed load
(:mod:`tests.e2e.faults_load`: HTTP writes and commands on ``customer.commands``, each with
its own idempotency key and a marker that is unique in the store), it SIGKILLs one thing at a
(seeded) random moment and starts it again: a process, the broker (memory storage: every
topic is lost) or PostgreSQL (stopped ``immediate``: no shutdown checkpoint, crash recovery
on start). After each restart it measures the time to recover: a new HTTP write read back
through ``X-Min-Position`` (relay and consumer work) and a new command answered on
``customer.command-results`` (ingest works). At the end it resends every command whose
outcome it never learnt (same key), drains and checks
(:func:`tests.e2e.faults_verdict.verdict_of`): every acknowledged command's event is in the
store exactly once (no marker twice), lag 0 within :data:`DRAIN_SECONDS`, no consumer group
stuck, every read model equal to a fresh rebuild, the membership topic holding every
recorded membership change.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from uuid import uuid4

import httpx

from infra.local_services import KafkaBroker, PostgresCluster, find_pg_bindir, free_port
from tests.e2e.faults_dumps import record_state
from tests.e2e.faults_load import Load
from tests.integration.kafka_support import CLIENTELE, Proc

PROCESSES = ("api", "relay", "consume", "ingest")
KINDS = (*PROCESSES, "broker", "postgres")
PARTITIONS = 6
RECOVER_SECONDS = 180.0  # an injection not recovered from by then fails the run
DRAIN_SECONDS = 180.0  # lag back to 0 after the load stops (the stated bound)
SEGMENT_RULE = {"field": "tags", "op": "contains", "value": "vip"}


class NotRecovered(AssertionError):
    """The system did not work again within the bound after an injection."""


class Harness:
    """The stack, its load and the injections (see the module docstring)."""

    def __init__(self, home: Path, seed: int) -> None:
        self.home = home
        self.rng = random.Random(seed)
        self.seed = seed
        # durable: with synchronous_commit off a crash loses commits already acknowledged
        self.postgres = PostgresCluster(home / "pg", free_port(), fast=False)
        self.broker = KafkaBroker(home / "broker", free_port())
        self.port = free_port()
        self.prefix = f"faults{uuid4().hex[:6]}."
        self.env = {
            **os.environ,
            "CLIENTELE_ENV": "dev",
            "CLIENTELE_ENV_FILE": "",
            "CLIENTELE_API_KEYS_FILE": str(home / "keys.json"),
            "CLIENTELE_DEFAULT_PHONE_REGION": "DE",
            "CLIENTELE_DATABASE_URL": self.postgres.url,
            "CLIENTELE_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "CLIENTELE_KAFKA_TOPIC_PREFIX": self.prefix,
            "CLIENTELE_KAFKA_PARTITIONS": str(PARTITIONS),
            "CLIENTELE_DATABASE_TIMEOUT_SECONDS": "2",
            "CLIENTELE_BACKOFF_MAX_SECONDS": "2",
            "CLIENTELE_LOG_LEVEL": "WARNING",
        }
        info = {**self.env, "CLIENTELE_LOG_LEVEL": "INFO"}
        self.procs = {
            "api": Proc(["serve", "--port", str(self.port)], self.env, home / "api.log"),
            # the Kafka processes at INFO: their groups' joins and assignments (the ingest's
            # with positions and committed offsets), the relay's topic repairs and renewals
            "relay": Proc(["relay"], info, home / "relay.log"),
            "consume": Proc(["consume"], info, home / "consume.log"),
            "ingest": Proc(["ingest"], info, home / "ingest.log"),
        }
        self.load = Load(self.rng, seed, self.prefix, self.broker.bootstrap, self.port)
        self.injected: Counter[str] = Counter()
        self.recovered: list[float] = []
        self.unrecovered: list[str] = []  # injections not recovered from within the bound
        self.failed = False  # the run failed: its log directory is kept
        self.states: list[Path] = []  # stacks and group state recorded at each failure

    # -- the stack -------------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[Harness]:
        self.postgres.start()
        self.broker.start()
        try:
            self._clientele("migrate")
            self.load.token = self._clientele(
                "keys", "create", "faults", "--role", "admin", "--pii"
            )
            for proc in self.procs.values():
                proc.start()
            self._wait_ready(RECOVER_SECONDS)
            self.load.write("PUT", "/v1/segments/vip", {"name": "VIP", "rule": SEGMENT_RULE}, None)
            yield self
        finally:
            self.load.stopping.set()
            for proc in self.procs.values():
                proc.terminate()
            self.broker.stop()
            self.postgres.stop()
            self.load.http.close()

    def _clientele(self, *args: str) -> str:
        done = subprocess.run(
            [CLIENTELE, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"clientele {' '.join(args)}: {done.stderr}{done.stdout}")
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with suppress(httpx.HTTPError):
                if self.load.http.get("/readyz").status_code == 200:
                    return
            self._assert_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API was not ready within {timeout:.0f} s")
            time.sleep(0.2)

    def _assert_alive(self) -> None:
        if self.load.errors:
            raise AssertionError(f"the load failed: {self.load.errors}")
        for name, proc in self.procs.items():
            if proc.process is not None and proc.process.poll() is not None:
                tail = proc.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} exited ({proc.process.returncode}):\n{tail}")

    # -- injections ---------------------------------------------------------------------------

    def inject(self, kind: str) -> float:
        """SIGKILL ``kind`` and start it again; seconds from its restart to recovery."""
        if kind in PROCESSES:
            self.procs[kind].kill()
            time.sleep(self.rng.uniform(0.0, 2.0))
            self.procs[kind].start()
        elif kind == "broker":
            pid = int(self.broker.pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            self.broker.stop()
            time.sleep(self.rng.uniform(0.5, 3.0))
            self.broker.start()
        else:
            self._crash_postgres()
            time.sleep(self.rng.uniform(0.5, 3.0))
            self.postgres.start()
        self.injected[kind] += 1
        restarted = time.monotonic()
        self.probe(RECOVER_SECONDS)
        return time.monotonic() - restarted

    def _crash_postgres(self) -> None:
        """``pg_ctl stop -m immediate``: every backend quits at once, no checkpoint."""
        command = [str(find_pg_bindir() / "pg_ctl"), "-D", str(self.postgres.pgdata)]
        command += ["-m", "immediate", "-w", "stop"]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, capture_output=True, timeout=60, check=False, cwd="/")
        self.postgres.stop()

    def probe(self, timeout: float) -> None:
        """Until a new write is read back through its position and a new command on the
        topic is answered: the whole pipeline works again."""
        deadline = time.monotonic() + timeout
        marker = self.load.marker("probe")
        request = {"path": "/v1/customers", "method": "POST", "json": {"name": marker}}
        while (written := self.load.send_http(marker, request)) is None:
            self.check_deadline(deadline, "an HTTP write")
            time.sleep(0.3)
        customer, position = written["customer_id"], str(written["position"])
        last = "none"  # the last answer to the read-back: says which stage is behind
        while True:
            with suppress(httpx.HTTPError):
                got = self.load.http.get(
                    f"/v1/customers/{customer}",
                    headers=self.load.headers(None, **{"X-Min-Position": position}),
                )
                if got.status_code == 200:
                    break
                last = f"{got.status_code} {got.text[:300]}"
            self.check_deadline(deadline, f"reading a write back at {position} (last: {last})")
            time.sleep(0.3)
        kmarker = self.load.marker("kprobe")
        body = {"type": "register", "name": kmarker, "idempotency_key": kmarker}
        while kmarker not in self.load.ledger.acknowledged:
            with suppress(Exception):
                producer = self.load.producer()
                try:
                    self.load.send_kafka(producer, kmarker, body)
                    producer.flush(timeout=5)
                finally:
                    producer.close(timeout=5)
            self.load.collect_results()
            self.check_deadline(deadline, "a command on the topic answered")

    def check_deadline(self, deadline: float, what: str) -> None:
        self._assert_alive()
        if time.monotonic() > deadline:
            state = self.record_state()
            raise NotRecovered(
                f"{what} within {RECOVER_SECONDS:.0f} s (logs in {self.home}, {state})"
            )

    def record_state(self) -> Path:
        """Record every live process's stacks and the ingest group's state under
        :attr:`home` (:func:`tests.e2e.faults_dumps.record_state`) and keep the logs."""
        self.failed = True
        pids = {
            name: proc.process.pid
            for name, proc in self.procs.items()
            if proc.process is not None and proc.process.poll() is None
        }
        commands = self.load.topic("commands")
        state = record_state(self.home, self.broker.bootstrap, commands, pids, self.env)
        self.states.append(state)
        print(f"recorded {state}", file=sys.stderr)
        return state

    def run(
        self,
        injections: int,
        *,
        pause: tuple[float, float] = (1.0, 4.0),
        minutes: float | None = None,
    ) -> None:
        """``injections`` injections under load, every kind at least once (when there are
        enough), in a seeded random order (no new one after ``minutes``, if given); then the
        outcome of every command is learnt."""
        budget = None if minutes is None else time.monotonic() + minutes * 60
        kinds = list(KINDS) if injections >= len(KINDS) else []
        kinds += [self.rng.choice(KINDS) for _ in range(injections - len(kinds))]
        self.rng.shuffle(kinds)
        with self.load.running():
            for kind in kinds:
                if budget is not None and time.monotonic() > budget:
                    break
                time.sleep(self.rng.uniform(*pause))
                try:
                    self.recovered.append(self.inject(kind))
                except NotRecovered as error:  # counted as a failure; then restart them all
                    self.unrecovered.append(f"after killing {kind}: {error}")
                    print(f"{kind}: NOT RECOVERED ({error}); restarting", file=sys.stderr)
                    self.restart_all()
                    continue
                print(f"{kind} recovered in {self.recovered[-1]:.1f} s", file=sys.stderr)
        self.settle()

    def restart_all(self) -> None:
        """What an operator (or an orchestrator's liveness probe) would do: restart every
        process; the run still fails (:attr:`unrecovered`)."""
        for proc in self.procs.values():
            proc.terminate()
            proc.start()
        self.probe(RECOVER_SECONDS)

    def settle(self) -> None:
        """Resend every command without a known outcome (same key) until all have one."""
        deadline = time.monotonic() + DRAIN_SECONDS
        producer = self.load.producer()
        try:
            while True:
                for marker, request in self.load.ledger.unacknowledged("http"):
                    self.load.send_http(marker, request)
                self.load.collect_results()
                pending = self.load.ledger.unacknowledged("kafka")
                if not pending and not self.load.ledger.unacknowledged("http"):
                    return
                for marker, body in pending:
                    self.load.send_kafka(producer, marker, body)
                producer.flush(timeout=10)
                self.check_deadline(deadline, f"{len(pending)} commands still unanswered")
                time.sleep(1)
        finally:
            producer.close(timeout=5)


@contextmanager
def harness(seed: int) -> Iterator[Harness]:
    """A running :class:`Harness` in a new directory, removed afterwards unless the run failed
    (an exception, or :attr:`Harness.failed` set: a failed check, an injection not recovered
    from): then its logs and recorded states are kept and the path is printed."""
    home = Path(tempfile.mkdtemp(prefix="clientele-faults-"))
    home.chmod(0o755)  # PostgreSQL runs as its own user below it
    made = Harness(home, seed)
    ok = False
    try:
        with made.running() as running:
            yield running
        ok = not made.failed
    finally:
        if ok:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"the run failed: its logs are kept in {home}", file=sys.stderr)
