"""Publishes segment membership changes to ``customer.segment-membership``.

The outbox is ``segment_changes`` itself (written in the same transaction as the membership it
describes), so there is no dual write: this publisher reads changes after its checkpoint,
sends them keyed by customer id, and moves the checkpoint only after the broker acknowledged
them. At-least-once; per-customer order follows the change sequence.
"""

from __future__ import annotations

import orjson
from kafka import KafkaProducer

from projections import segments
from projections.readstore import ReadStore

CHECKPOINTS = """CREATE TABLE IF NOT EXISTS publisher_checkpoints (
    name TEXT PRIMARY KEY, seq BIGINT NOT NULL)"""


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

    def checkpoint(self) -> int:
        with self.read_store.transaction() as tx:
            row = tx.fetchone("SELECT seq FROM publisher_checkpoints WHERE name = ?", (self.name,))
        return 0 if row is None else int(row[0])

    def publish_once(self) -> int:
        """Send the next changes and move the checkpoint; returns how many were sent."""
        after = self.checkpoint()
        with self.read_store.transaction() as tx:
            pending = segments.changes(tx, after_seq=after, limit=self.batch_size)
        if not pending:
            return 0
        sent = [
            self.producer.send(
                self.topic,
                key=str(change["customer_id"]).encode(),
                value=orjson.dumps({k: v for k, v in change.items() if k != "seq"}),
            )
            for change in pending
        ]
        self.producer.flush()
        for future in sent:
            future.get(timeout=30)
        with self.read_store.transaction() as tx:
            tx.execute(
                "INSERT INTO publisher_checkpoints (name, seq) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                (self.name, pending[-1]["seq"]),
            )
        return len(pending)

    def publish_all(self) -> int:
        total = 0
        while (count := self.publish_once()) > 0:
            total += count
        return total
