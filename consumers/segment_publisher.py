"""Publishes segment membership changes to ``customer.segment-membership``.

The outbox is ``segment_changes`` itself (written in the same transaction as the membership it
describes), so there is no dual write: this publisher reads changes after its checkpoint,
sends them keyed by customer id, and moves the checkpoint only after the broker acknowledged
them. The checkpoint is a change's key (position of the event that caused it, segment,
customer): changes are written in log order, and a rebuild reproduces the same keys, so it
stays valid across rebuilds. At-least-once; per-customer order follows the log. The flush is
bounded (:meth:`infra.kafka_producer.RenewingProducer.flush`): one that times out raises before the
checkpoint moves, so the same changes are sent again on the next attempt.

Given a :class:`~infra.kafka_topics.TopicInspector` it also notices, like the relay
(:mod:`consumers.relay_topic`), that the broker lost what it acknowledged (the topic gone,
recreated, offsets gone backwards): it logs ``membership.topic_lost`` and publishes every
change again from the beginning of ``segment_changes``, then looks at the topic again before it
publishes anything more (the topic it republished into may be replaced in between).
"""

from __future__ import annotations

import time

import orjson
import structlog
from kafka import KafkaProducer

from consumers.relay_topic import MARKS, Marks, losses, read_marks
from infra.kafka_topics import Identity, TopicInspector
from infra.readstore import ReadStore
from projections import segment_queries

log = structlog.get_logger(__name__)
VERIFY_SECONDS = 5.0  # how often it looks at its topic

CHECKPOINTS = """CREATE TABLE IF NOT EXISTS membership_checkpoints (
    name TEXT PRIMARY KEY, position BIGINT NOT NULL, segment_id TEXT NOT NULL,
    customer_id TEXT NOT NULL)"""
# Before segment changes were keyed by event position, this held a sequence number that no
# longer means anything (the membership topic is at-least-once: publishing starts over).
RETIRED = "DROP TABLE IF EXISTS publisher_checkpoints"


class MembershipPublisher:
    def __init__(
        self,
        read_store: ReadStore,
        producer: KafkaProducer,
        topic: str,
        *,
        batch_size: int = 1000,
        inspector: TopicInspector | None = None,
    ) -> None:
        self.read_store = read_store
        self.producer = producer
        self.topic = topic
        self.batch_size = batch_size
        self.name = f"segment-membership:{topic}"
        self.inspector = inspector
        self._verify_at = 0.0
        with read_store.transaction() as tx:
            tx.raw(CHECKPOINTS)
            tx.raw(RETIRED)
            tx.raw(MARKS)

    def marks(self) -> Marks:
        """What it recorded of its topic (identity, acknowledged ends)."""
        return read_marks(self.read_store, self.name) or Marks(self.topic)

    def verify(self) -> bool:
        """Look at the topic; if it lost what was acknowledged, start publishing over from
        the first change. Returns whether it did. After a loss :meth:`publish_all` looks again
        before it publishes more: the republish may go into a topic the broker auto-created,
        which the relay then replaces with one of the configured partition count; looked at
        before anything else goes into the new one, its offsets show that loss too."""
        if self.inspector is None:
            return False
        self._verify_at = time.monotonic() + VERIFY_SECONDS
        state = self.inspector.state(self.topic)
        recorded = read_marks(self.read_store, self.name)
        identity = Identity(state.cluster_id, state.topic_id)
        reasons = losses(recorded, state)
        if not reasons and recorded is not None and recorded.identity == identity:
            return False
        marks = recorded if recorded is not None and not reasons else Marks(self.topic)
        marks.identity = identity
        with self.read_store.transaction() as tx:
            if reasons:
                tx.execute("DELETE FROM membership_checkpoints WHERE name = ?", (self.name,))
            marks.write(tx, self.name)
        if reasons:
            log.warning("membership.topic_lost", topic=self.topic, reasons=reasons)
            self._verify_at = 0.0
        return bool(reasons)

    def checkpoint(self) -> segment_queries.Cursor:
        with self.read_store.transaction() as tx:
            row = tx.fetchone(
                "SELECT position, segment_id, customer_id FROM membership_checkpoints "
                "WHERE name = ?",
                (self.name,),
            )
        return segment_queries.START if row is None else (int(row[0]), str(row[1]), str(row[2]))

    def publish_once(self) -> int:
        """Send the next changes and move the checkpoint; returns how many were sent."""
        with self.read_store.transaction() as tx:
            pending = segment_queries.changes(tx, after=self.checkpoint(), limit=self.batch_size)
        if not pending:
            return 0
        sent = [
            self.producer.send(
                self.topic, key=str(change["customer_id"]).encode(), value=orjson.dumps(change)
            )
            for change in pending
        ]
        self.producer.flush()
        firsts: dict[int, int] = {}  # partition -> first offset acknowledged now
        for future in sent:
            metadata = future.get(timeout=30)
            firsts[metadata.partition] = min(
                firsts.get(metadata.partition, metadata.offset), metadata.offset
            )
        marks = self.marks()
        for partition, offset in firsts.items():  # a lower bound of the end, as the relay's
            marks.acknowledged(partition, offset)
        last = pending[-1]
        with self.read_store.transaction() as tx:
            if self.inspector is not None:
                marks.write(tx, self.name)
            tx.execute(
                "INSERT INTO membership_checkpoints (name, position, segment_id, customer_id) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET position = "
                "excluded.position, segment_id = excluded.segment_id, "
                "customer_id = excluded.customer_id",
                (self.name, last["position"], last["segment_id"], last["customer_id"]),
            )
        return len(pending)

    def publish_all(self) -> int:
        """Look at the topic when due (:meth:`verify`), then send every pending change."""
        if time.monotonic() >= self._verify_at:
            self.verify()
        total = 0
        while (count := self.publish_once()) > 0:
            total += count
        return total
