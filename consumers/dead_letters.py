"""Dead letters: messages that cannot be decoded or applied go to ``<topic>.dlq`` with the reason.

The original key and bytes are kept; headers say why, and where the message came from, so
``clientele dlq replay`` can re-drive it once the cause is fixed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog
from kafka import KafkaProducer

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    headers: list[tuple[str, bytes]]


def send_to_dlq(producer: KafkaProducer, record: Any, reason: str) -> None:
    """Publish ``record`` (a kafka-python ConsumerRecord) to its topic's DLQ and wait for the ack."""
    headers = [
        *(record.headers or []),
        ("dlq.reason", reason[:2000].encode()),
        ("dlq.topic", record.topic.encode()),
        ("dlq.partition", str(record.partition).encode()),
        ("dlq.offset", str(record.offset).encode()),
        ("dlq.at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()).encode()),
    ]
    producer.send(f"{record.topic}.dlq", key=record.key, value=record.value, headers=headers).get(
        timeout=30
    )
    log.warning(
        "dlq.sent",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=reason,
    )


def from_record(record: Any) -> DeadLetter:
    """Read a DLQ record back into a :class:`DeadLetter`."""
    headers = dict(record.headers or [])
    return DeadLetter(
        topic=headers.get("dlq.topic", b"").decode(),
        partition=int(headers.get("dlq.partition", b"-1")),
        offset=int(headers.get("dlq.offset", b"-1")),
        key=record.key,
        value=record.value,
        reason=headers.get("dlq.reason", b"").decode(),
        headers=[(k, v) for k, v in (record.headers or []) if not k.startswith("dlq.")],
    )
