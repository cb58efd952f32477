"""The ingest scenario's peer baseline: eventsourcing's own batched save of plain events.

An eventsourcing ``Application`` with the library's PostgreSQL persistence and nothing of
clientele's (no encryption, no hash chain, no gapless check, no idempotency, no read of
earlier state), saving as many events as the batch path stored, 500 new aggregates per
``save`` (one transaction, eventsourcing's table lock), each event carrying a payload of the
stored rows' average size. Issue 16's target: the batch path at ≥ 2 x this rate.
"""

from __future__ import annotations

import time
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

BATCH = 500


class Plain(Aggregate):
    """One plain event per aggregate: its creation, with a payload."""

    @event("Created")
    def __init__(self, payload: str) -> None:
        self.payload = payload


class PlainBench(Application[UUID]):
    """eventsourcing's application, untouched; its tables are named after it."""

    name = "PlainBench"


def batched_save(database_url: str, events: int, payload_bytes: int) -> float:
    """Seconds eventsourcing takes to save ``events`` plain events, ``BATCH`` per save."""
    parts = urlsplit(database_url)
    app = PlainBench(
        {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts.path.lstrip("/"),
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "CREATE_TABLE": "y",
        }
    )
    payload = "x" * max(1, payload_bytes)
    try:
        started = time.perf_counter()
        for start in range(0, events, BATCH):
            app.save(*[Plain(payload) for _ in range(min(BATCH, events - start))])
        return time.perf_counter() - started
    finally:
        app.close()
