"""The load of the fault-injection harness: HTTP writes and commands on ``customer.commands``,
each with its own idempotency key and a marker unique in the store, recorded in a ledger."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition


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


class Load:
    """The writers, what they sent and what was acknowledged; ``rng`` is the run's seeded
    random source, shared with the injections."""

    def __init__(
        self, rng: random.Random, seed: int, prefix: str, bootstrap: str, port: int
    ) -> None:
        self.rng = rng
        self.seed = seed
        self.prefix = prefix
        self.bootstrap = bootstrap
        self.ledger = Ledger()
        self.stopping = threading.Event()
        self.token = ""
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        self._count = 0
        self.errors: list[str] = []  # what failed in a load thread
        self._results_read: dict[int, int] = {}  # partition -> next offset to read

    def marker(self, kind: str) -> str:
        with self.ledger.lock:
            self._count += 1
            return f"{kind}-{self.seed}-{self._count}"

    def headers(self, key: str | None, **extra: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}", **extra}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def write(self, method: str, path: str, body: dict[str, Any], key: str | None) -> Any:
        """One HTTP write; its JSON body on success, None when it failed (unknown outcome)."""
        try:
            answer = self.http.request(method, path, json=body, headers=self.headers(key))
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
            marker = self.marker("name")
            return marker, {"path": "/v1/customers", "method": "POST", "json": {"name": marker}}
        target = self.rng.choice(customers)
        if roll < 0.7:
            marker, tag = f"vip-{target}", "vip"  # the segment's tag, once per customer
            with self.ledger.lock:
                taken = marker in self.ledger.sent
            if taken or self.rng.random() < 0.8:
                marker = tag = self.marker("tag")
            path = f"/v1/customers/{target}/tags/{tag}"
            return marker, {"path": path, "method": "PUT", "json": None}
        marker = self.marker("order")
        body = {"order_id": marker, "amount": f"{self.rng.randint(1, 300)}.00", "currency": "EUR"}
        return marker, {"path": f"/v1/customers/{target}/purchases", "method": "POST", "json": body}

    def send_http(self, marker: str, request: dict[str, Any]) -> dict[str, Any] | None:
        """Send (or resend) one HTTP command; its acknowledgement, or None (outcome unknown)."""
        with self.ledger.lock:
            self.ledger.sent.setdefault(marker, ("http", request))
        done: dict[str, Any] | None = self.write(
            request["method"], request["path"], request["json"] or {}, marker
        )
        if done is not None:
            with self.ledger.lock:
                self.ledger.acknowledged[marker] = str(done["customer_id"])
        return done

    def _kafka_command(self) -> tuple[str, dict[str, Any]]:
        customers = self.ledger.customers()
        if not customers or self.rng.random() < 0.3:
            marker = self.marker("kname")
            return marker, {"type": "register", "name": marker, "idempotency_key": marker}
        marker = self.marker("ktag")
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
            producer.send(self.topic("commands"), key=marker.encode(), value=orjson.dumps(body))

    def topic(self, name: str) -> str:
        return {
            "commands": f"{self.prefix}customer.commands",
            "results": f"{self.prefix}customer.command-results",
            "membership": f"{self.prefix}customer.segment-membership",
        }[name]

    def producer(self) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
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
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                allow_auto_create_topics=False,
                request_timeout_ms=5000,
            )
            try:
                topic = self.topic("results")
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
    def running(self) -> Iterator[None]:
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
                        producer = self.producer()
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
