"""A PostgreSQL application recorder whose notification log has no gaps.

eventsourcing's recorder locks the events table, then INSERTs; a version conflict is detected
by the primary key only after the ``bigserial`` has handed out ids, so every refused write
leaves a hole in the notification ids. Here the conflict is checked after the lock and before
the INSERT (nothing can slip in between while the table is locked), so a refused transaction
consumes no ids and positions stay contiguous — which lets consumers treat a hole as a bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from infra.data_keys import KEYS_DDL, shred_in_transaction
from infra.hash_chain import HASHES_DDL, postgres_links


class GaplessPostgresRecorder(PostgresApplicationRecorder):
    """Selected with ``APPLICATION_RECORDER_TOPIC=infra.pg_recorder:GaplessPostgresRecorder``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conflict_statement = SQL(
            "SELECT originator_id, originator_version FROM {}.{} "
            "WHERE (originator_id, originator_version) IN "
            "(SELECT * FROM unnest(%s::uuid[], %s::bigint[])) LIMIT 1"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self.sql_create_statements.append(SQL(HASHES_DDL))  # type: ignore[arg-type]
        self.sql_create_statements.append(SQL(KEYS_DDL["postgres"]))  # type: ignore[arg-type]
        self._snapshots_table = self.events_table_name.removesuffix("events") + "snapshots"

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        self._lock_table(curs)
        curs.execute(
            self._conflict_statement,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
            ),
        )
        clash = curs.fetchone()
        if clash is not None:
            msg = (
                f"version {clash['originator_version']} of {clash['originator_id']} "
                "was recorded by another writer"
            )
            raise IntegrityError(msg)
        postgres_links(curs, stored_events)  # hash links, under the same lock and transaction
        shred_in_transaction(curs, stored_events, "%s", self._snapshots_table)  # erasures
        self._notify_channel(curs)
        # The plain INSERT of the aggregate recorder (the lock is already held).
        PostgresAggregateRecorder._insert_stored_events(self, curs, stored_events, **kwargs)
