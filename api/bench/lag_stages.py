"""The e2e lag split in two at the broker: ack → published, published → visible.

*Published* is each event's Kafka record timestamp (CreateTime: the wall clock of the relay
when it handed the record to its producer). The bench records the wall clock of each
acknowledgement and of the moment the profiles read model showed the version; same host, same
clock, so the two stages of one command add up to its e2e lag. *ack → published* is the store
commit, the relay's wake-up (NOTIFY), read and send (negative when the relay sent before the
HTTP answer reached the client); *published → visible* is the producer's linger, the broker,
the consumer's fetch (how long the broker held it), the batch applied to every read model and
its commit, and the watcher's poll (:data:`api.bench.live.POLL_S`).

The topic is read after the load, from the end offsets taken before it, so the reading costs
the measured processes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import TopicPartition
from kafka.errors import KafkaError

from api.bench.harness import summary
from infra import kafka
from infra.settings import Settings

CREATE_TIME = 0  # a record's timestamp type: the producer's clock (1: the broker's, on append)

Shown = tuple[str, int, float, float]  # customer id, version, ack and visible wall clock (s)


@dataclass(frozen=True)
class Mark:
    """Where the events topic of ``settings`` ended before the load."""

    bootstrap: str
    topic: str
    since: dict[int, int]

    @classmethod
    def now(cls, settings: Settings) -> Mark:
        bootstrap, topic = str(settings.kafka_bootstrap), kafka.Topics(settings.kafka_topic_prefix)
        return cls(bootstrap, topic.events, end_offsets(bootstrap, topic.events))

    def split(self, shown: list[Shown]) -> dict[str, Any]:
        """The stages of ``shown`` (:func:`stages`), from the records published since; a
        topic that cannot be read back gives ``{"error"}`` (the measured lag stands)."""
        try:
            with _quiet():
                return stages(shown, published_at(self.bootstrap, self.topic, self.since))
        except (KafkaError, TimeoutError, KeyError, ValueError) as error:
            return {"error": repr(error)}


@contextmanager
def _quiet() -> Iterator[None]:
    """kafka-python's INFO lines (connections, metadata) stay out of the bench's output."""
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """``topic``'s end offset per partition now."""
    with _quiet():
        reader = kafka.consumer(bootstrap, None)
        try:
            partitions = [
                TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic))
            ]
            return {tp.partition: int(o) for tp, o in reader.end_offsets(partitions).items()}
        finally:
            reader.close()


def published_at(
    bootstrap: str, topic: str, since: dict[int, int], timeout: float = 60.0
) -> dict[tuple[str, int], float]:
    """(customer id, version) → CreateTime (s) of each record from ``since`` to the end now."""
    until = end_offsets(bootstrap, topic)
    reader = kafka.consumer(bootstrap, None, auto_offset_reset="none")
    found: dict[tuple[str, int], float] = {}
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(until)]
        reader.assign(partitions)
        for tp in partitions:
            reader.seek(tp, since.get(tp.partition, 0))
        deadline = time.monotonic() + timeout
        while any(reader.position(tp) < until[tp.partition] for tp in partitions):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"reading {topic}: not done within {timeout:.0f}s")
            for records in reader.poll(timeout_ms=200).values():
                for record in records:
                    if record.timestamp_type != CREATE_TIME:  # the broker's clock: no split
                        continue
                    doc = orjson.loads(record.value)
                    found[doc["customer_id"], doc["version"]] = record.timestamp / 1000
    finally:
        reader.close()
    return found


def stages(shown: list[Shown], published: dict[tuple[str, int], float]) -> dict[str, Any]:
    """Both stages (ms, p50/p95/p99 …) of the shown commands whose event was found."""
    split = [
        (published[c, v] - ack, visible - published[c, v])
        for c, v, ack, visible in shown
        if (c, v) in published
    ]
    return {
        "ack_to_published_ms": summary([a * 1000 for a, _ in split]),
        "published_to_visible_ms": summary([b * 1000 for _, b in split]),
        "matched": len(split),
        "shown": len(shown),
    }
