"""Fault injection on full mode, as deployed (issue 17): one harness for the CI test
(``tests/e2e/test_faults.py``, a few injections) and ``make reliability`` (``python -m
tests.e2e.faults``, >= 100 injections, writes ``RELIABILITY.md``).

A throwaway PostgreSQL and tansu broker on loopback, and ``clientele serve``, ``relay``,
``consume`` and ``ingest`` started as a user does. Under continuous mixed load (HTTP writes
and commands on ``customer.commands``, each with its own idempotency key and a marker that
is unique in the store), it SIGKILLs one thing at a (seeded) random moment and starts it
again: a process, the broker (memory storage: every topic is lost) or PostgreSQL (stopped
``immediate``: no shutdown checkpoint, crash recovery on start). After each restart it
measures the time to recover: a new HTTP write read back through ``X-Min-Position`` (relay
and consumer work) and a new command answered on ``customer.command-results`` (ingest
works). At the end it resends every command whose outcome it never learnt (same key), drains
and checks (:meth:`Harness.verdict`): every acknowledged command's event is in the store
exactly once (no marker twice), lag 0 within :data:`DRAIN_SECONDS`, no consumer group stuck,
every read model equal to a fresh rebuild, the membership topic holding every recorded
membership change.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bootstrap import build
from consumers.rebuild import rebuild
from consumers.status import pipeline_report
from infra.local_services import KafkaBroker, PostgresCluster, find_pg_bindir, free_port
from infra.settings import Settings
from tests.integration.kafka_support import CLIENTELE, Proc

PROCESSES = ("api", "relay", "consume", "ingest")
KINDS = (*PROCESSES, "broker", "postgres")
PARTITIONS = 6
RECOVER_SECONDS = 180.0  # an injection not recovered from by then fails the run
DRAIN_SECONDS = 180.0  # lag back to 0 after the load stops (the stated bound)
SEGMENT_RULE = {"field": "tags", "op": "contains", "value": "vip"}


class NotRecovered(AssertionError):
    """The system did not work again within the bound after an injection."""


@dataclass
class Ledger:
    """Every command sent: marker -> (how, body); and those acknowledged (marker ->
    customer id). A marker is unique in the store: the tag, order id or name it writes."""

    sent: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    acknowledged: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def customers(self) -> list[str]:
        with self.lock:
            return sorted(set(self.acknowledged.values()))

    def unacknowledged(self, how: str) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return [
                (k, body)
                for k, (h, body) in self.sent.items()
                if h == how and k not in self.acknowledged
            ]


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
        self.procs = {
            "api": Proc(["serve", "--port", str(self.port)], self.env, home / "api.log"),
            "relay": Proc(["relay"], self.env, home / "relay.log"),
            "consume": Proc(["consume"], self.env, home / "consume.log"),
            "ingest": Proc(["ingest"], self.env, home / "ingest.log"),
        }
        self.ledger = Ledger()
        self.injected: Counter[str] = Counter()
        self.recovered: list[float] = []
        self.stopping = threading.Event()
        self.token = ""
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        self._count = 0
        self.errors: list[str] = []  # what failed in a load thread
        self.unrecovered: list[str] = []  # injections not recovered from within the bound
        self._results_read: dict[int, int] = {}  # partition -> next offset to read

    # -- the stack -------------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[Harness]:
        self.postgres.start()
        self.broker.start()
        try:
            self._clientele("migrate")
            self.token = self._clientele("keys", "create", "faults", "--role", "admin", "--pii")
            for proc in self.procs.values():
                proc.start()
            self._wait_ready(RECOVER_SECONDS)
            self._write("PUT", "/v1/segments/vip", {"name": "VIP", "rule": SEGMENT_RULE}, None)
            yield self
        finally:
            self.stopping.set()
            for proc in self.procs.values():
                proc.terminate()
            self.broker.stop()
            self.postgres.stop()
            self.http.close()

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
                if self.http.get("/readyz").status_code == 200:
                    return
            self._assert_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API was not ready within {timeout:.0f} s")
            time.sleep(0.2)

    def _assert_alive(self) -> None:
        if self.errors:
            raise AssertionError(f"the load failed: {self.errors}")
        for name, proc in self.procs.items():
            if proc.process is not None and proc.process.poll() is not None:
                tail = proc.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} exited ({proc.process.returncode}):\n{tail}")

    # -- commands ----------------------------------------------------------------------------

    def _marker(self, kind: str) -> str:
        with self.ledger.lock:
            self._count += 1
            return f"{kind}-{self.seed}-{self._count}"

    def _headers(self, key: str | None, **extra: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}", **extra}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def _write(self, method: str, path: str, body: dict[str, Any], key: str | None) -> Any:
        """One HTTP write; its JSON body on success, None when it failed (unknown outcome)."""
        try:
            answer = self.http.request(method, path, json=body, headers=self._headers(key))
        except httpx.HTTPError:
            return None
        if answer.status_code >= 500:
            if answer.headers.get("content-type") != "application/problem+json":
                raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text}")
            return None
        if not answer.is_success:
            raise AssertionError(f"{method} {path} refused: {answer.status_code} {answer.text}")
        return answer.json()

    def _http_command(self) -> tuple[str, dict[str, Any]]:
        customers = self.ledger.customers()
        roll = self.rng.random()
        if not customers or roll < 0.3:
            marker = self._marker("name")
            return marker, {"path": "/v1/customers", "method": "POST", "json": {"name": marker}}
        target = self.rng.choice(customers)
        if roll < 0.7:
            marker, tag = f"vip-{target}", "vip"  # the segment's tag, once per customer
            with self.ledger.lock:
                taken = marker in self.ledger.sent
            if taken or self.rng.random() < 0.8:
                marker = tag = self._marker("tag")
            path = f"/v1/customers/{target}/tags/{tag}"
            return marker, {"path": path, "method": "PUT", "json": None}
        marker = self._marker("order")
        body = {"order_id": marker, "amount": f"{self.rng.randint(1, 300)}.00", "currency": "EUR"}
        return marker, {"path": f"/v1/customers/{target}/purchases", "method": "POST", "json": body}

    def send_http(self, marker: str, request: dict[str, Any]) -> dict[str, Any] | None:
        """Send (or resend) one HTTP command; its acknowledgement, or None (outcome unknown)."""
        with self.ledger.lock:
            self.ledger.sent.setdefault(marker, ("http", request))
        done: dict[str, Any] | None = self._write(
            request["method"], request["path"], request["json"] or {}, marker
        )
        if done is not None:
            with self.ledger.lock:
                self.ledger.acknowledged[marker] = str(done["customer_id"])
        return done

    def _kafka_command(self) -> tuple[str, dict[str, Any]]:
        customers = self.ledger.customers()
        if not customers or self.rng.random() < 0.3:
            marker = self._marker("kname")
            return marker, {"type": "register", "name": marker, "idempotency_key": marker}
        marker = self._marker("ktag")
        target = self.rng.choice(customers)
        return marker, {
            "type": "tag",
            "customer_id": target,
            "tag": marker,
            "idempotency_key": marker,
        }

    def send_kafka(self, producer: KafkaProducer, marker: str, body: dict[str, Any]) -> None:
        with self.ledger.lock:
            self.ledger.sent.setdefault(marker, ("kafka", body))
        with suppress(Exception):  # the broker is away: the outcome is learnt (or not) later
            producer.send(self._topic("commands"), key=marker.encode(), value=orjson.dumps(body))

    def _topic(self, name: str) -> str:
        return {
            "commands": f"{self.prefix}customer.commands",
            "results": f"{self.prefix}customer.command-results",
            "membership": f"{self.prefix}customer.segment-membership",
        }[name]

    def _producer(self) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self.broker.bootstrap,
            allow_auto_create_topics=False,
            max_block_ms=2000,
            request_timeout_ms=5000,
        )

    def collect_results(self, timeout: float = 10.0) -> int:
        """Read ``customer.command-results`` up to its current end (from where the last read
        stopped, or from the start of a partition that went backwards: the broker lost it);
        record accepted outcomes. Returns how many were read."""
        found = 0
        with suppress(Exception):  # the broker is away: try again later
            reader = KafkaConsumer(
                bootstrap_servers=self.broker.bootstrap,
                enable_auto_commit=False,
                allow_auto_create_topics=False,
                request_timeout_ms=5000,
            )
            try:
                topic = self._topic("results")
                numbers = reader.partitions_for_topic(topic) or set()
                partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
                reader.assign(partitions)
                ends = reader.end_offsets(partitions)
                for tp in partitions:
                    start = self._results_read.get(tp.partition, 0)
                    reader.seek(tp, start if start <= ends[tp] else 0)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and any(
                    reader.position(tp) < ends[tp] for tp in partitions
                ):
                    for records in reader.poll(timeout_ms=500).values():
                        for record in records:
                            found += 1
                            self._record_result(record.key, record.value)
                for tp in partitions:
                    self._results_read[tp.partition] = reader.position(tp)
            finally:
                reader.close()
        return found

    def _record_result(self, key: bytes | None, value: bytes) -> None:
        outcome = orjson.loads(value)
        marker = key.decode() if key else ""
        if outcome.get("status") == "accepted":
            with self.ledger.lock:
                if marker in self.ledger.sent:
                    self.ledger.acknowledged[marker] = str(outcome["customer_id"])

    @contextmanager
    def load(self) -> Iterator[None]:
        """HTTP and command-topic writers in threads until the block ends."""

        def http_writer() -> None:
            while not self.stopping.is_set():
                marker, request = self._http_command()
                if self.send_http(marker, request) is None:
                    self.stopping.wait(0.3)
                self.stopping.wait(0.02)

        def kafka_writer() -> None:
            producer: KafkaProducer | None = None
            while not self.stopping.is_set():
                if producer is None:
                    with suppress(Exception):
                        producer = self._producer()
                    if producer is None:
                        self.stopping.wait(1)
                        continue
                marker, body = self._kafka_command()
                self.send_kafka(producer, marker, body)
                self.stopping.wait(0.1)
            if producer is not None:
                with suppress(Exception):
                    producer.close(timeout=5)

        def guarded(writer: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    writer()
                except Exception as error:  # e.g. a write refused: the run fails with it
                    self.errors.append(f"{writer.__name__}: {error!r}")

            return run

        threads = [
            threading.Thread(target=guarded(http_writer), name="http-load", daemon=True),
            threading.Thread(target=guarded(kafka_writer), name="kafka-load", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            self.stopping.set()
            for thread in threads:
                thread.join(30)
            self.stopping.clear()

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
        marker = self._marker("probe")
        request = {"path": "/v1/customers", "method": "POST", "json": {"name": marker}}
        while (written := self.send_http(marker, request)) is None:
            self._check_deadline(deadline, "an HTTP write")
            time.sleep(0.3)
        customer, position = written["customer_id"], str(written["position"])
        while True:
            with suppress(httpx.HTTPError):
                got = self.http.get(
                    f"/v1/customers/{customer}",
                    headers=self._headers(None, **{"X-Min-Position": position}),
                )
                if got.status_code == 200:
                    break
            self._check_deadline(deadline, "reading a write back")
            time.sleep(0.3)
        kmarker = self._marker("kprobe")
        body = {"type": "register", "name": kmarker, "idempotency_key": kmarker}
        while kmarker not in self.ledger.acknowledged:
            with suppress(Exception):
                producer = self._producer()
                try:
                    self.send_kafka(producer, kmarker, body)
                    producer.flush(timeout=5)
                finally:
                    producer.close(timeout=5)
            self.collect_results()
            self._check_deadline(deadline, "a command on the topic answered")

    def _check_deadline(self, deadline: float, what: str) -> None:
        self._assert_alive()
        if time.monotonic() > deadline:
            raise NotRecovered(f"{what} within {RECOVER_SECONDS:.0f} s (logs in {self.home})")

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
        with self.load():
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
        producer = self._producer()
        try:
            while True:
                for marker, request in self.ledger.unacknowledged("http"):
                    self.send_http(marker, request)
                self.collect_results()
                pending = self.ledger.unacknowledged("kafka")
                if not pending and not self.ledger.unacknowledged("http"):
                    return
                for marker, body in pending:
                    self.send_kafka(producer, marker, body)
                producer.flush(timeout=10)
                self._check_deadline(deadline, f"{len(pending)} commands still unanswered")
                time.sleep(1)
        finally:
            producer.close(timeout=5)

    # -- the verdict --------------------------------------------------------------------------

    def verdict(self) -> dict[str, Any]:
        """Drain, then count what was lost or doubled and compare read models to a rebuild."""
        settings = Settings(
            database_url=self.postgres.url,
            kafka_bootstrap=self.broker.bootstrap,
            kafka_topic_prefix=self.prefix,
            api_keys_file=self.home / "keys.json",
        )
        with build(settings) as services:
            drained = time.monotonic()
            while True:
                report = pipeline_report(services)
                lags = [report["relay"]["lag"], *(p["lag"] for p in report["projections"])]
                if not any(lags):
                    break
                self._check_deadline(drained + DRAIN_SECONDS, f"lag 0 (now {lags})")
                time.sleep(0.5)
            drain_seconds = time.monotonic() - drained
            markers: Counter[str] = Counter()
            for envelope in services.feed.read(0, 10**8):
                data = envelope.data
                for key in ("name", "tag", "order_id"):
                    value = data.get(key)
                    if isinstance(value, str) and value.startswith(
                        ("name-", "tag-", "order-", "kname-", "ktag-", "probe-", "kprobe-", "vip-")
                    ):
                        markers[value] += 1
                if envelope.type == "customer.tagged" and data.get("tag") == "vip":
                    markers[f"vip-{envelope.customer_id}"] += 1
            differences = {
                p.name: rebuild(services.feed, services.read_store, p, verify_only=True).differences
                for p in services.projectors
            }
            with services.read_store.transaction() as tx:
                recorded = {
                    (str(r[0]), str(r[1]), str(r[2]), int(r[3]))
                    for r in tx.fetchall(
                        "SELECT segment_id, customer_id, change, position FROM segment_changes"
                    )
                }
        published = self._membership_topic(len(recorded))
        status = self._clientele_status()
        with self.ledger.lock:
            acknowledged = dict(self.ledger.acknowledged)
        return {
            "acknowledged": len(acknowledged),
            "by_surface": Counter(self.ledger.sent[m][0] for m in acknowledged),
            "lost": sorted(m for m in acknowledged if markers[m] == 0),
            "duplicated": sorted(m for m, n in markers.items() if n > 1),
            "unrebuilt": {k: v[:3] for k, v in differences.items() if v},
            "membership_missing": sorted(recorded - published)[:5],
            "membership_recorded": len(recorded),
            "stuck": status,
            "unrecovered": list(self.unrecovered),
            "drain_seconds": drain_seconds,
        }

    def _membership_topic(self, expect: int) -> set[tuple[str, str, str, int]]:
        published: set[tuple[str, str, str, int]] = set()
        reader = KafkaConsumer(bootstrap_servers=self.broker.bootstrap, enable_auto_commit=False)
        try:
            topic = self._topic("membership")
            numbers = reader.partitions_for_topic(topic) or set()
            partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
            reader.assign(partitions)
            reader.seek_to_beginning(*partitions)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                batch = reader.poll(timeout_ms=1000)
                for records in batch.values():
                    for r in records:
                        d = orjson.loads(r.value)
                        published.add(
                            (d["segment_id"], d["customer_id"], d["change"], int(d["position"]))
                        )
                if len(published) >= expect and not batch:
                    break
        finally:
            reader.close()
        return published

    def _clientele_status(self) -> list[str]:
        """Consumer groups ``clientele consumers status`` calls stuck (empty: none)."""
        done = subprocess.run(
            [CLIENTELE, "consumers", "status", "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        groups = orjson.loads(done.stdout)["groups"]
        return [g["group"] for g in groups if g["stuck"]]


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def report(harness: Harness, verdict: dict[str, Any] | None, command: str, wall: float) -> str:
    """``RELIABILITY.md``: the figures of one run and the command that produced them
    (``verdict`` None: the run stopped before its checks)."""
    recovered = harness.recovered or [float("nan")]
    lines = [
        "# Reliability: fault injection on full mode",
        "",
        f"Produced by `{command}` (seed {harness.seed}) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {wall / 60:.1f} min wall; "
        "harness: `tests/e2e/faults.py` (see its docstring for what each injection does).",
        "",
        "| injections | " + " | ".join(KINDS) + " | total |",
        "|---|" + "---|" * (len(KINDS) + 1),
        "| count | "
        + " | ".join(str(harness.injected[k]) for k in KINDS)
        + f" | {sum(harness.injected.values())} |",
        "",
        "| figure | value |",
        "|---|---|",
        f"| injections not recovered from within {RECOVER_SECONDS:.0f} s | "
        f"{len(harness.unrecovered)} |",
        f"| time to recover p50 / p99 / max (s) | {percentile(recovered, 0.5):.1f} / "
        f"{percentile(recovered, 0.99):.1f} / {max(recovered):.1f} |",
    ]
    if verdict is not None:
        surfaces = verdict["by_surface"]
        lines += [
            f"| commands acknowledged | {verdict['acknowledged']} "
            f"({surfaces['http']} HTTP, {surfaces['kafka']} command topic) |",
            f"| lost | {len(verdict['lost'])} |",
            f"| duplicated | {len(verdict['duplicated'])} |",
            f"| read models differing from a rebuild | {len(verdict['unrebuilt'])} |",
            f"| membership changes recorded / missing from the topic | "
            f"{verdict['membership_recorded']} / {len(verdict['membership_missing'])} |",
            f"| consumer groups stuck | {len(verdict['stuck'])} |",
            f"| lag back to 0 after the load stopped (s; bound {DRAIN_SECONDS:.0f}) | "
            f"{verdict['drain_seconds']:.1f} |",
        ]
    lines += [
        "",
        "Time to recover: from the restart of what was killed until a new HTTP write is read "
        "back through `X-Min-Position` and a new command on `customer.commands` is answered.",
        "",
        *(f"- not recovered {line}" for line in harness.unrecovered),
        "",
    ]
    return "\n".join(lines)


def failures(verdict: dict[str, Any]) -> list[str]:
    """What the verdict says went wrong (empty: nothing)."""
    checks = {
        "lost": verdict["lost"],
        "duplicated": verdict["duplicated"],
        "read models differ from a rebuild": verdict["unrebuilt"],
        "membership changes missing from the topic": verdict["membership_missing"],
        "stuck consumer groups": verdict["stuck"],
        "injections not recovered from without a restart": verdict["unrecovered"],
    }
    return [f"{what}: {found}" for what, found in checks.items() if found]


@contextmanager
def harness(seed: int) -> Iterator[Harness]:
    home = Path(tempfile.mkdtemp(prefix="clientele-faults-"))
    home.chmod(0o755)  # PostgreSQL runs as its own user below it
    ok = False
    try:
        with Harness(home, seed).running() as running:
            yield running
        ok = True
    finally:
        if ok:
            shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--injections", type=int, default=100)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--report", type=Path, default=Path("RELIABILITY.md"))
    parser.add_argument("--minutes", type=float, help="no new injection after this time")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what it started, then go
    os.environ |= {"CLIENTELE_ENV": "dev", "CLIENTELE_ENV_FILE": ""}  # as the tests run it
    command = f"make reliability INJECTIONS={args.injections} SEED={args.seed}"
    if args.minutes is not None:
        command += f" MINUTES={args.minutes:g}"
    started = time.monotonic()
    with harness(args.seed) as running:
        try:
            running.run(args.injections, minutes=args.minutes)
            verdict = running.verdict()
        except Exception as error:  # the run could not finish: say how far it got
            text = report(running, None, command, time.monotonic() - started)
            text += f"\n**The run stopped:** {error}\n"
            args.report.write_text(text)
            print(text)
            return 1
    text = report(running, verdict, command, time.monotonic() - started)
    problems = failures(verdict)
    if problems:
        text += "\n**Failed:** " + "; ".join(problems) + "\n"
    args.report.write_text(text)
    print(text)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
