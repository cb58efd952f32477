"""Which instance of the commands topic a record came from, so coordinate keys never collide.

A command without its own ``idempotency_key`` is keyed by its Kafka coordinates. A broker that
loses its data (tansu with memory storage, a topic deleted and recreated, another cluster)
starts the topic again at offset 0, so the same coordinates name another command: keyed alike,
it would be refused as a key reuse with another digest, or answered with the old command's
outcome and never executed.

Each instance of the topic is told apart by its topic id (from the cluster metadata; a new
cluster gives new ids too). The first instance the ingest sees is epoch 0, and its keys keep
the format of before (``kafka:{topic}:{partition}:{offset}``), so a message redelivered across
the upgrade is still recognised; each later instance gets the next epoch, and its keys carry it
(``kafka:{topic}#{epoch}:{partition}:{offset}``). Epochs are kept in the read store
(``command_topic_instances``: topic, topic id, epoch), shared by every ingest process, so all of
them key a record alike and a restart keeps the numbering. A broker that reports no topic ids
cannot be told apart this way: its records keep the epoch 0 format.
"""

from __future__ import annotations

import threading

import structlog

from infra.readstore import ReadStore

log = structlog.get_logger(__name__)

INSTANCES = """CREATE TABLE IF NOT EXISTS command_topic_instances (
    topic TEXT NOT NULL,
    topic_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    PRIMARY KEY (topic, topic_id),
    UNIQUE (topic, epoch))"""


class TopicInstances:
    """The epochs of ``topic``'s instances, kept in ``read_store`` (in memory without one:
    then the numbering starts again with each process)."""

    def __init__(self, read_store: ReadStore | None, topic: str) -> None:
        self.read_store = read_store
        self.topic = topic
        self._epochs: dict[str, int] = {}
        self._lock = threading.Lock()
        self._table_made = False

    def epoch(self, topic_id: str) -> int:
        """The epoch of the instance with ``topic_id`` (the next free one if it is new)."""
        with self._lock:
            if topic_id not in self._epochs:
                self._epochs[topic_id] = self._recorded(topic_id)
            return self._epochs[topic_id]

    def coordinates(self, topic_id: str | None, partition: int, offset: int) -> str:
        """The key of the record at (``partition``, ``offset``) of the instance ``topic_id``
        (None: unknown, epoch 0)."""
        epoch = 0 if topic_id is None else self.epoch(topic_id)
        instance = self.topic if epoch == 0 else f"{self.topic}#{epoch}"
        return f"kafka:{instance}:{partition}:{offset}"

    def _recorded(self, topic_id: str) -> int:
        if self.read_store is None:
            return len(self._epochs)
        with self.read_store.transaction() as tx:
            tx.lock_schema()  # one process at a time numbers a new instance
            if not self._table_made:
                tx.raw(INSTANCES)
            row = tx.fetchone(
                "SELECT epoch FROM command_topic_instances WHERE topic = ? AND topic_id = ?",
                (self.topic, topic_id),
            )
            new = row is None
            if row is None:
                row = tx.fetchone(
                    "SELECT COALESCE(MAX(epoch), -1) + 1 FROM command_topic_instances "
                    "WHERE topic = ?",
                    (self.topic,),
                )
                assert row is not None  # an aggregate always gives a row
                tx.execute(
                    "INSERT INTO command_topic_instances (topic, topic_id, epoch) VALUES (?, ?, ?)",
                    (self.topic, topic_id, int(row[0])),
                )
        self._table_made = True
        epoch = int(row[0])
        if new:
            log.info("ingest.topic_instance", topic=self.topic, topic_id=topic_id, epoch=epoch)
        return epoch
