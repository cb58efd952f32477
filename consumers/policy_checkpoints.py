"""Where each policy runner's reactions stand: ``policy_checkpoints``, beside the event store
(one row per runner name: the store position up to which it has reacted)."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.values import utc_text
from infra.read_tx import Tx
from infra.readstore import ReadStore

TABLE = """CREATE TABLE IF NOT EXISTS policy_checkpoints (
    name TEXT PRIMARY KEY, position BIGINT NOT NULL, updated_at TEXT NOT NULL)"""


class PolicyCheckpoints:
    """Reads and moves runners' checkpoints in ``store``. The table is created by this
    object's first committed read or write, not by every poll: a ``CREATE`` takes the
    read store's schema lock (:class:`~infra.read_tx.Tx`), which a runner polling every
    second would otherwise take every second."""

    def __init__(self, store: ReadStore) -> None:
        self.store = store
        self._created = False

    def position(self, name: str) -> int:
        """The position runner ``name`` has reacted up to (0 before its first advance)."""
        with self.store.transaction() as tx:
            self._create(tx)
            row = tx.fetchone("SELECT position FROM policy_checkpoints WHERE name = ?", (name,))
        self._created = True
        return 0 if row is None else int(row[0])

    def advance(self, name: str, position: int) -> None:
        """Set runner ``name``'s checkpoint to ``position``."""
        with self.store.transaction() as tx:
            self._create(tx)
            tx.execute(
                "INSERT INTO policy_checkpoints (name, position, updated_at) "
                "VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "position = excluded.position, updated_at = excluded.updated_at",
                (name, position, utc_text(datetime.now(UTC))),
            )
        self._created = True

    def _create(self, tx: Tx) -> None:
        if not self._created:
            tx.raw(TABLE)
