"""The relay's tables beside its checkpoint, and what other processes read or do with them:
``relay_checkpoints`` (position acknowledged by the broker), ``relay_topics`` (what it recorded
of its topic, :mod:`consumers.relay_topic`) and ``relay_parked`` (customers held back,
:class:`~infra.parking.ParkingLot`); the channel that wakes a relay to re-drive them.
"""

from __future__ import annotations

from typing import Any

import psycopg

from consumers.relay_topic import MARKS
from infra.parking import ParkingLot, table_schema
from infra.readstore import ReadStore

CHECKPOINTS = """CREATE TABLE IF NOT EXISTS relay_checkpoints (
    name TEXT PRIMARY KEY, position BIGINT NOT NULL, updated_at TEXT NOT NULL)"""
PARKED = table_schema("relay_parked", scope="name")
DEFAULT_NAME = "customer-events"
CHANNEL = "clientele_relay_redrive"  # NOTIFY here: relays retry their parked customers


def checkpoint(checkpoints: ReadStore, name: str = DEFAULT_NAME) -> int:
    """The relay's acknowledged position (0 before its first batch or table)."""
    with checkpoints.transaction() as tx:
        if "relay_checkpoints" not in checkpoints.table_names(tx):
            return 0
        row = tx.fetchone("SELECT position FROM relay_checkpoints WHERE name = ?", (name,))
    return 0 if row is None else int(row[0])


def ensure_relay_tables(checkpoints: ReadStore) -> None:
    """Create ``relay_checkpoints``, ``relay_topics`` and ``relay_parked`` (idempotent)."""
    with checkpoints.transaction() as tx:
        tx.raw(CHECKPOINTS)
        tx.raw(MARKS)
        tx.raw(PARKED)


def parking_lot(name: str = DEFAULT_NAME) -> ParkingLot:
    """Customers the relay called ``name`` holds back."""
    return ParkingLot("relay_parked", ("name", name))


def parked_summary(checkpoints: ReadStore, name: str = DEFAULT_NAME) -> dict[str, Any]:
    """``{"count", "oldest"}`` of the relay's parked customers (none before its table)."""
    with checkpoints.transaction() as tx:
        if "relay_parked" not in checkpoints.table_names(tx):
            return {"count": 0, "oldest": None}
        return parking_lot(name).summary(tx)


def wake_relay(database_url: str) -> None:
    """Wake a relay waiting on PostgreSQL LISTEN (a polling one wakes by itself)."""
    if not database_url.startswith(("postgresql://", "postgres://")):
        return
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f'NOTIFY "{CHANNEL}"')
