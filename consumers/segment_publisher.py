"""Publishes segment membership changes to ``customer.segment-membership``.

The outbox is ``segment_changes`` itself (written in the same transaction as the membership it
describes), so there is no dual write: this publisher reads changes after its checkpoint,
sends them keyed by customer id, and moves the checkpoint only after the broker acknowledged
them. The checkpoint is a change's key (position of the event that caused it, segment,
customer): changes are written in log order, and a rebuild reproduces the same keys, so it
stays valid across rebuilds. At-least-once; per-customer order follows the log.
"""

from __future__ import annotations

import orjson
from kafka import KafkaProducer

from infra.readstore import ReadStore
from projections import segments

CHECKPOINTS = """CREATE TABLE IF NOT EXISTS membership_checkpoints (
    name TEXT PRIMARY KEY, position BIGINT NOT NULL, segment_id TEXT NOT NULL,
    customer_id TEXT NOT NULL)"""
# Before segment changes were keyed by event position, this held a sequence number that no
# longer means anything (the membership topic is at-least-once: publishing starts over).
RETIRED = "DROP TABLE IF EXISTS publisher_checkpoints"


class MembershipPublisher:
    def __init__(
        self, read_store: ReadStore, producer: KafkaProducer, topic: str, *, batch_size: int = 1000
    ) -> None:
        self.read_store = read_store
        self.producer = producer
        self.topic = topic
        self.batch_size = batch_size
        self.name = f"segment-membership:{topic}"
        with read_store.transaction() as tx:
            tx.raw(CHECKPOINTS)
            tx.raw(RETIRED)

    def checkpoint(self) -> segments.Cursor:
        with self.read_store.transaction() as tx:
            row = tx.fetchone(
                "SELECT position, segment_id, customer_id FROM membership_checkpoints "
                "WHERE name = ?",
                (self.name,),
            )
        return segments.START if row is None else (int(row[0]), str(row[1]), str(row[2]))

    def publish_once(self) -> int:
        """Send the next changes and move the checkpoint; returns how many were sent."""
        with self.read_store.transaction() as tx:
            pending = segments.changes(tx, after=self.checkpoint(), limit=self.batch_size)
        if not pending:
            return 0
        sent = [
            self.producer.send(
                self.topic, key=str(change["customer_id"]).encode(), value=orjson.dumps(change)
            )
            for change in pending
        ]
        self.producer.flush()
        for future in sent:
            future.get(timeout=30)
        last = pending[-1]
        with self.read_store.transaction() as tx:
            tx.execute(
                "INSERT INTO membership_checkpoints (name, position, segment_id, customer_id) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET position = "
                "excluded.position, segment_id = excluded.segment_id, "
                "customer_id = excluded.customer_id",
                (self.name, last["position"], last["segment_id"], last["customer_id"]),
            )
        return len(pending)

    def publish_all(self) -> int:
        total = 0
        while (count := self.publish_once()) > 0:
            total += count
        return total
