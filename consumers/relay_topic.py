"""What the relay knows of its topic, and how it tells that the broker lost what it acknowledged.

Beside its checkpoint, in the same transaction, the relay records (table ``relay_topics``) the
topic it publishes to, the cluster id and topic id it saw, and per partition an end offset the
broker acknowledged (the first offset acknowledged in the latest flush + 1: a lower bound of the
partition's end that brokers reporting ends by batch, as tansu does, still reach). The topic no longer holds what
was acknowledged when it is missing, when it is another topic (another cluster id or topic
id: deleted and recreated, or a broker restarted without its data), when it has fewer
partitions than offsets were acknowledged on, or when a partition ends below its acknowledged
end offset (offsets went backwards). Then the relay republishes from the store: see
:meth:`consumers.relay.Relay.verify`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaProducer

from infra.kafka import MessageLimits
from infra.kafka_topics import Identity, TopicInspector, TopicState
from infra.read_tx import Tx
from infra.readstore import ReadStore

MARKS = """CREATE TABLE IF NOT EXISTS relay_topics (
    name TEXT PRIMARY KEY, topic TEXT NOT NULL, cluster_id TEXT, topic_id TEXT,
    end_offsets TEXT NOT NULL, updated_at TEXT NOT NULL)"""


@dataclass
class Marks:
    """The relay's record of its topic: ``end_offsets`` maps partition -> acknowledged end."""

    topic: str
    identity: Identity = field(default_factory=lambda: Identity(None, None))
    end_offsets: dict[int, int] = field(default_factory=dict)

    def acknowledged(self, partition: int, offset: int) -> None:
        """The broker acknowledged a record at ``offset`` of ``partition``."""
        self.end_offsets[partition] = max(self.end_offsets.get(partition, 0), offset + 1)

    def write(self, tx: Tx, name: str) -> None:
        tx.execute(
            "INSERT INTO relay_topics (name, topic, cluster_id, topic_id, end_offsets, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "topic = excluded.topic, cluster_id = excluded.cluster_id, "
            "topic_id = excluded.topic_id, end_offsets = excluded.end_offsets, "
            "updated_at = excluded.updated_at",
            (
                name,
                self.topic,
                self.identity.cluster_id,
                self.identity.topic_id,
                orjson.dumps({str(p): o for p, o in sorted(self.end_offsets.items())}).decode(),
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "cluster_id": self.identity.cluster_id,
            "topic_id": self.identity.topic_id,
            "end_offsets": {str(p): o for p, o in sorted(self.end_offsets.items())},
        }


def read_marks(store: ReadStore, name: str) -> Marks | None:
    """The relay ``name``'s record of its topic (None before its first acknowledged batch)."""
    with store.transaction() as tx:
        if "relay_topics" not in store.table_names(tx):
            return None
        row = tx.fetchone(
            "SELECT topic, cluster_id, topic_id, end_offsets FROM relay_topics WHERE name = ?",
            (name,),
        )
    if row is None:
        return None
    offsets = {int(p): int(o) for p, o in orjson.loads(row[3]).items()}
    return Marks(str(row[0]), Identity(row[1], row[2]), offsets)


def losses(marks: Marks | None, state: TopicState) -> list[str]:
    """Why ``state`` no longer holds what ``marks`` says was acknowledged (empty: it does)."""
    if marks is None:
        return []
    if marks.topic != state.topic:
        return [f"the relay published to {marks.topic!r} before, now to {state.topic!r}"]
    if not state.exists:
        return [f"topic {state.topic!r} is gone"]
    reasons = []
    if why := marks.identity.differs(state):
        reasons.append(why)
    beyond = [p for p in marks.end_offsets if p >= state.partitions]
    if beyond:
        reasons.append(
            f"{state.partitions} partitions, but offsets were acknowledged on partition "
            f"{max(beyond)}"
        )
    for partition, acknowledged in sorted(marks.end_offsets.items()):
        end = state.end_offsets.get(partition)
        if end is not None and end < acknowledged:
            reasons.append(
                f"partition {partition} ends at offset {end}, below the acknowledged {acknowledged}"
            )
    return reasons


@dataclass
class TopicGuard:
    """What the relay needs to check and repair its topic: a look at the broker, the configured
    partition count and limits, and a way to get a fresh producer (an idempotent producer may
    not survive the broker losing its state)."""

    inspector: TopicInspector
    partitions: int
    limits: MessageLimits
    new_producer: Callable[[], KafkaProducer]
    others: tuple[str, ...] = ()  # the other topics of ours: repaired with this one

    def repair_others(self) -> list[str]:
        """After the broker lost this topic it lost the others too, and may have brought them
        back auto-created with its default partition count when a client asked for them:
        create the missing ones and recreate those with another count (what they held is
        gone already; a command sent meanwhile gets no result and is sent again). Returns
        the topics it made."""
        made = []
        for topic in self.others:
            state = self.inspector.state(topic)
            if not state.exists or state.partitions != self.partitions:
                self.inspector.recreate(topic, self.partitions, self.limits)
                made.append(topic)
        return made
