"""Helpers for tests against the real broker: clientele processes, reading topics back."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from infra.envelope import Envelope
from infra.local_services import KafkaBroker, free_port

CLIENTELE = str(Path(sys.executable).parent / "clientele")
TEARDOWN_GRACE = 1.0
"""Seconds a test's broker gets to stop once its tests are done, then SIGKILL: tansu waits up
to 5 s for connected clients to go away (measured: 0.05 s idle, 5.05 s with one consumer
connected), and nothing is checked after it (memory storage: nothing to keep)."""


def freeze(pid: int, timeout: float = 10.0) -> None:
    """SIGSTOP ``pid`` (a broker) and wait, bounded, until every thread of it is stopped. kill()
    returns once the signal is queued: the kernel wakes one thread to take it, and the other
    threads run on until that one is scheduled (up to 55 ms on a loaded box, measured), so a
    request sent meanwhile is answered (a flush a test expects to time out completed: 4 of 60
    under load without this wait, 0 of 90 with it). SIGCONT resumes it."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while not all(_stopped(task) for task in Path(f"/proc/{pid}/task").iterdir()):
        assert time.monotonic() < deadline, f"process {pid} not stopped after {timeout} s"
        time.sleep(0.005)


def wait_reachable(admin: KafkaAdminClient, timeout: float = 30.0) -> None:
    """Wait, bounded, until ``admin`` reaches its broker: a client that saw the broker go away
    keeps its node in reconnect backoff (exponential from 50 ms, per failed attempt) after the
    broker is back, and a request meanwhile fails at once with the retriable
    ``NodeNotReadyError`` (0.25-0.6 s after a restart with 0.5 s down, measured)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.describe_cluster()
            return
        except KafkaError as error:
            if not error.retriable or time.monotonic() >= deadline:
                raise
        time.sleep(0.05)


def _stopped(task: Path) -> bool:
    try:
        state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # the thread ended
        return True
    return state in ("T", "t")


def full_mode_env(database_url: str, bootstrap: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a full-mode process (relay, consume, ingest, …): the database, the
    broker at ``bootstrap``, topics under ``prefix``, warnings and worse logged; ``extra``
    adds or overrides variables (``CLIENTELE_KAFKA_PARTITIONS="12"``)."""
    return {
        **os.environ,
        "CLIENTELE_DATABASE_URL": database_url,
        "CLIENTELE_KAFKA_BOOTSTRAP": bootstrap,
        "CLIENTELE_KAFKA_TOPIC_PREFIX": prefix,
        "CLIENTELE_LOG_LEVEL": "WARNING",
        **extra,
    }


class Proc:
    """A clientele process we can SIGKILL and start again."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [CLIENTELE, *self.args], env=self.env, stdout=sink, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()[
            -3000:
        ]
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def read_topic(bootstrap: str, topic: str, expect_at_least: int, timeout: float = 60) -> list[Any]:
    reader = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000
    )
    partitions = [TopicPartition(topic, p) for p in range(12)]
    reader.assign(partitions)
    reader.seek_to_beginning(*partitions)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = reader.poll(timeout_ms=1000)
        records += [r for rs in batch.values() for r in rs]
        if len(records) >= expect_at_least and not batch:
            break
    reader.close()
    return records


def assert_topic_keeps_per_customer_order(broker: KafkaBroker, topic: str, total: int) -> None:
    """Per customer, first deliveries arrive as versions 1, 2, 3, … (replays only repeat)."""
    seen: dict[UUID, list[int]] = {}
    for record in read_topic(broker.bootstrap, topic, total):
        envelope = Envelope.from_bytes(record.value)
        assert record.key == str(envelope.customer_id).encode()
        seen.setdefault(envelope.customer_id, []).append(envelope.version)
    firsts_total = 0
    for versions in seen.values():
        firsts = [v for i, v in enumerate(versions) if v not in versions[:i]]
        assert firsts == list(range(1, len(firsts) + 1)), versions
        firsts_total += len(firsts)
    assert firsts_total == total


@contextmanager
def private_broker(name: str) -> Iterator[KafkaBroker]:
    """A broker of one test module only (its tests may stop, kill, freeze and restart it),
    its data under a temporary directory named after ``name``, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"clientele-{name}-broker-"))
    server = KafkaBroker(root, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=TEARDOWN_GRACE)
        shutil.rmtree(root, ignore_errors=True)
