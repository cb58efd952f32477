"""The outbox relay: the store's notification log → ``customer.events`` on Kafka.

It follows the log from its checkpoint (woken by PostgreSQL LISTEN/NOTIFY, with catch-up reads
and a polling fallback), publishes each envelope keyed by customer id through an idempotent
``acks=all`` producer, and moves its checkpoint only after the broker acknowledged the whole
batch. A crash replays at most one batch: at-least-once, per-customer order preserved (one key,
one partition, ordered sends). Consumers are idempotent on (customer, version).
"""

from __future__ import annotations

import threading
import time

import psycopg
import structlog
from eventsourcing.postgres import PostgresApplicationRecorder
from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from consumers.store_feed import StoreFeed
from infra.envelope import Envelope
from projections.readstore import ReadStore

log = structlog.get_logger(__name__)
CHECKPOINTS = """CREATE TABLE IF NOT EXISTS relay_checkpoints (
    name TEXT PRIMARY KEY, position BIGINT NOT NULL, updated_at TEXT NOT NULL)"""


def checkpoint(checkpoints: ReadStore, name: str = "customer-events") -> int:
    """The relay's acknowledged position (0 before its first batch or table)."""
    with checkpoints.transaction() as tx:
        if "relay_checkpoints" not in checkpoints.table_names(tx):
            return 0
        row = tx.fetchone("SELECT position FROM relay_checkpoints WHERE name = ?", (name,))
    return 0 if row is None else int(row[0])


class Relay:
    """Publishes customer envelopes from ``feed`` to ``topic``; checkpoint in ``checkpoints``."""

    def __init__(
        self,
        feed: StoreFeed,
        producer: KafkaProducer,
        topic: str,
        checkpoints: ReadStore,
        *,
        name: str = "customer-events",
        batch_size: int = 2000,
        poll_interval: float = 1.0,
    ) -> None:
        self.feed = feed
        self.producer = producer
        self.topic = topic
        self.checkpoints = checkpoints
        self.name = name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.stopping = threading.Event()
        self._acknowledged: int | None = None
        with checkpoints.transaction() as tx:
            tx.raw(CHECKPOINTS)

    def position(self) -> int:
        return checkpoint(self.checkpoints, self.name)

    def lag(self) -> int:
        """Customer events recorded but not yet acknowledged by the broker."""
        return self.feed.pending(self.position(), customers_only=True)

    def catch_up(self) -> int:
        """Publish everything recorded so far. While the broker acknowledges one batch, the
        next is already read from the store; each checkpoint still waits for its acks."""
        total = 0
        if self._acknowledged is None:  # we are the only writer of our checkpoint
            self._acknowledged = self.position()
        envelopes = self.feed.read_sealed(self._acknowledged, self.batch_size)
        while envelopes and not self.stopping.is_set():
            sent = self._send(envelopes)
            reached = envelopes[-1].position
            full = len(envelopes) == self.batch_size
            envelopes = self.feed.read_sealed(reached, self.batch_size) if full else []
            self._confirm(sent, reached)
            total += len(sent)
        return total

    def _send(self, envelopes: list[Envelope]) -> list[FutureRecordMetadata]:
        return [
            self.producer.send(
                self.topic,
                key=e.customer_key.encode(),
                value=e.to_bytes(),
                headers=e.kafka_headers(),
            )
            for e in envelopes
        ]

    def _confirm(self, sent: list[FutureRecordMetadata], reached: int) -> None:
        """Wait for the broker's acks of ``sent``, then checkpoint ``reached``."""
        self.producer.flush()
        for future in sent:
            future.get(timeout=30)  # raises if any send failed: the checkpoint stays put
        with self.checkpoints.transaction() as tx:
            tx.execute(
                "INSERT INTO relay_checkpoints (name, position, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
                "updated_at = excluded.updated_at",
                (self.name, reached, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
            )
        self._acknowledged = reached

    def run(self) -> None:
        """Publish until :meth:`stop`; errors back off and retry, never skip."""
        listener = self._listen()
        backoff = self.poll_interval
        try:
            while not self.stopping.is_set():
                try:
                    published = self.catch_up()
                    if published:
                        log.info("relay.published", count=published, position=self._acknowledged)
                    backoff = self.poll_interval
                except Exception:
                    log.exception("relay.batch_failed")
                    self._acknowledged = None  # re-read the checkpoint on the next attempt
                    backoff = min(backoff * 2, 30.0)
                self._wait(listener, backoff)
        finally:
            if listener is not None:
                listener.close()

    def stop(self) -> None:
        self.stopping.set()

    def _listen(self) -> psycopg.Connection[tuple[object, ...]] | None:
        recorder = self.feed.store.recorder
        if not isinstance(recorder, PostgresApplicationRecorder):
            return None  # SQLite: polling only
        connection = psycopg.connect(self.feed.store.database_url, autocommit=True)
        connection.execute(f'LISTEN "{recorder.channel_name}"')
        return connection

    def _wait(
        self, listener: psycopg.Connection[tuple[object, ...]] | None, timeout: float
    ) -> None:
        if listener is None:
            self.stopping.wait(timeout)
            return
        for _ in listener.notifies(timeout=timeout, stop_after=1):
            break
