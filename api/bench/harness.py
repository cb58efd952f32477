"""Benchmark plumbing: throwaway services, child processes, statistics and RSS sampling.

Everything started here is registered on an :class:`~contextlib.ExitStack`, so it is stopped
and removed when the scenario ends — normally, on error, or on Ctrl-C.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import psutil
import structlog

from infra import kafka
from infra.api_keys import KeyStore, Role
from infra.local_services import KafkaBroker, PostgresCluster, find_pg_bindir, free_port
from infra.settings import Settings

log = structlog.get_logger(__name__)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 to 100) by linear interpolation; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, p50/p95/p99, min and max of some measurements, and how many there were."""
    return {
        "median": percentile(values, 50),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "min": min(values, default=math.nan),
        "max": max(values, default=math.nan),
        "n": len(values),
    }


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll ``check`` until true; :class:`TimeoutError` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not done within {timeout:.0f}s")
        time.sleep(every)


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does; ``--quick`` uses small ones."""

    repeats: int
    customers: int
    ingest_commands: int
    naive_commands: int
    http_writes: int
    http_concurrency: int
    relay_events: int
    rebuild_events: int
    e2e_seconds: float
    e2e_per_s: int
    e2e_low_per_s: int
    reads_seconds: float
    reads_per_s: int
    read_concurrency: int
    throughput_seconds: float  # each closed-loop run of GET profile and of the bare ASGI app
    travel_events: int
    travel_requests: int
    growth_batches: int
    growth_batch_size: int
    import_customers: int
    import_purchases: int
    analytics_customers: int
    analytics_requests: int  # per kind of read and repeat
    policy_customers: int
    policy_lag_samples: int
    campaign_customers: int  # base (and audience) of the campaign launch
    duplicate_customers: int = 100_000  # the base a full duplicates scan reads
    fold_events: int = 20_000  # commands seeded for the read models' CPU per event (``fold``)


@dataclass
class Stack:
    """Fresh PostgreSQL (and optionally the tansu broker) for one scenario, under ``root``."""

    root: Path
    postgres: PostgresCluster
    broker: KafkaBroker | None
    exits: ExitStack

    def database(self, prefix: str) -> str:
        """URL of a new, empty database."""
        return self.postgres.create_database(f"{prefix}_{uuid4().hex[:8]}")

    def settings(self, database_url: str, topic_prefix: str = "") -> Settings:
        """Settings for full mode on this stack (or PostgreSQL-only without a broker): a
        throwaway development setup (the secrets' development defaults)."""
        return Settings(
            env="dev",
            database_url=database_url,
            kafka_bootstrap=self.broker.bootstrap if self.broker else None,
            kafka_topic_prefix=topic_prefix,
            api_keys_file=self.root / "api-keys.json",
            log_json=True,
        )

    def topics(self, prefix: str, partitions: int) -> kafka.Topics:
        """Fresh topic names (created now) for one run."""
        assert self.broker is not None
        topics = kafka.Topics(prefix)
        kafka.ensure_topics(self.broker.bootstrap, topics.all(), partitions)
        return topics

    def api_key(self) -> str:
        """A new admin + pii key in this stack's key file; returns its secret."""
        _, token = KeyStore(self.root / "api-keys.json").create("bench", [Role.ADMIN], pii=True)
        return token

    def spawn(self, settings: Settings, name: str, *args: str) -> subprocess.Popen[bytes]:
        """``clientele ARGS`` as a child process in this stack's environment (stopped on exit)."""
        return self.spawn_python(settings, name, "-c", "from api.cli import app; app()", *args)

    def spawn_python(self, settings: Settings, name: str, *args: str) -> subprocess.Popen[bytes]:
        """``python ARGS`` as a child process in this stack's environment (stopped on exit)."""
        env = {**os.environ, **env_of(settings)}
        log_file = self.root / f"{name}.log"
        with log_file.open("ab") as sink:
            child = subprocess.Popen(
                [sys.executable, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        self.exits.callback(stop_process, child)
        return child

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.root / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def env_of(settings: Settings) -> dict[str, str]:
    """The ``CLIENTELE_*`` variables that reproduce ``settings`` in a child process."""
    env = {
        "CLIENTELE_DATABASE_URL": settings.database_url,
        "CLIENTELE_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "CLIENTELE_API_KEYS_FILE": str(settings.api_keys_file),
        "CLIENTELE_LOG_LEVEL": "WARNING",
    }
    if settings.env:
        env["CLIENTELE_ENV"] = settings.env
    if settings.kafka_bootstrap:
        env["CLIENTELE_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    return env


def stop_process(child: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(5)


@contextmanager
def throwaway(*, broker: bool = False, durable: bool = False) -> Iterator[Stack]:
    """Fresh PostgreSQL (``durable``: fsync on) and, with ``broker``, tansu, all on 127.0.0.1."""
    with ExitStack() as exits:
        # Not a 0700 temp dir's child: as root, PostgreSQL runs as its own user below it.
        root = Path(tempfile.mkdtemp(prefix="clientele-bench-"))
        root.chmod(0o755)
        exits.callback(shutil.rmtree, root, ignore_errors=True)
        postgres = PostgresCluster(root / "pg", free_port(), fast=not durable)
        exits.callback(postgres.stop)
        postgres.start()
        server = None
        if broker:
            server = KafkaBroker(root / "broker", free_port())
            exits.callback(server.stop)
            server.start()
        yield Stack(root, postgres, server, exits)


@contextmanager
def kept(root: Path) -> Iterator[Stack]:
    """PostgreSQL (no broker) whose cluster stays under ``root`` between runs: created on the
    first, started again by later ones, stopped (never removed) when the scenario ends."""
    with ExitStack() as exits:
        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)  # as root, PostgreSQL runs as its own user below it
        postgres = PostgresCluster(root / "pg", free_port(), fast=True)
        exits.callback(postgres.stop)
        postgres.start()
        yield Stack(root, postgres, None, exits)


@dataclass
class RssSampler:
    """Samples the resident set size of named processes in a background thread."""

    pids: dict[str, int]
    interval: float = 0.2
    samples: dict[str, list[float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.samples = {name: [] for name in self.pids}
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        processes = {name: psutil.Process(pid) for name, pid in self.pids.items()}
        while not self._stop.is_set():
            for name, process in processes.items():
                try:
                    self.samples[name].append(process.memory_info().rss / 2**20)
                except psutil.Error:
                    continue
            self._stop.wait(self.interval)

    def report(self) -> dict[str, Any]:
        """Peak RSS (MB) and growth from the first to the last 10 % of samples, per process."""
        per_process = {}
        for name, values in self.samples.items():
            if not values:
                continue
            tenth = max(1, len(values) // 10)
            first, last = values[:tenth], values[-tenth:]
            start, end = sum(first) / len(first), sum(last) / len(last)
            per_process[name] = {
                "peak_rss_mb": round(max(values), 1),
                "first_10pct_mb": round(start, 1),
                "last_10pct_mb": round(end, 1),
                "growth_pct": round(100 * (end - start) / start, 2),
                "samples": len(values),
            }
        return {
            "peak_rss_mb": max((p["peak_rss_mb"] for p in per_process.values()), default=0.0),
            "growth_pct": max((p["growth_pct"] for p in per_process.values()), default=0.0),
            "processes": per_process,
        }


def rss_mb(pids: dict[str, int]) -> dict[str, float]:
    """The resident set size (MB) of each named process now."""
    return {name: round(psutil.Process(p).memory_info().rss / 2**20, 1) for name, p in pids.items()}


def machine() -> dict[str, Any]:
    """Facts about the box the numbers come from."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        postgres = subprocess.run(
            [str(find_pg_bindir() / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, FileNotFoundError, subprocess.TimeoutExpired):
        postgres = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": postgres,
        "broker": "tansu (memory storage), 1 broker",
    }
