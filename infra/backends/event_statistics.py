"""The events table's planner statistics, kept by its writers under their own lock.

Every write takes eventsourcing's gapless ``LOCK TABLE … IN EXCLUSIVE MODE`` on the events
table. That lock conflicts with the one ``ANALYZE`` needs, and autovacuum never waits for a
lock: while writes keep coming it logs ``skipping analyze of "clientele_events" --- lock not
available`` and the table keeps no statistics at all (its ``VACUUM`` is skipped the same way
whenever a writer holds the lock, and got through only between writes). Without statistics
the planner falls back to fixed guesses (a third of the rows for ``notification_id > $2``,
0.5 % per topic) and plans the feed's pages
(``… WHERE topic = ANY($1) AND notification_id > $2 ORDER BY notification_id LIMIT $3``, read
by the relay and the consumers every few seconds even when idle) as a parallel sequential scan
of the whole table: 59-187 ms each at 57,000 events, on both cores at once, and growing with
the store. With statistics the same page is an ordered index scan that stops at its limit:
0.04 ms at the head (BENCHMARKS.md, "Performance round 13 (issue 16): the idle feed's polls").

A writer therefore analyzes the table itself, inside its own locked transaction (a lock a
transaction holds never conflicts with its own requests, so nothing waits), once the events
changed since the last analyze exceed :data:`THRESHOLD` plus :data:`SCALE` times the table's
rows. Each writer process counts what it inserted and asks the server (one
``pg_stat_user_tables`` row) only when its own count reaches the rule; the server's count is
the table's, so writers rarely analyze for each other's rows twice (it lags a backend's
inserts by a second or so). The check and the analyze run in a savepoint: if they fail, the
write does not. A role that does not own the table cannot analyze it: that is logged once
(``store.analyze_not_owner``) and not tried again (README, "The events table keeps its planner
statistics").
"""

from __future__ import annotations

import time

import structlog
from psycopg import Cursor, Error
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal

log = structlog.get_logger(__name__)

THRESHOLD = 1000
"""Changed rows before any analyze (eventsourcing's ``autovacuum_analyze_threshold``)."""
SCALE = 1.0
"""Changed rows before the next one, as a fraction of the table's rows: once it has doubled.
Stale statistics are fine for the feed's pages (beyond the histogram the planner reads the
index's actual end); missing ones are not. Each analyze holds up every other writer, and a
young store grows fast: 0.1 (PostgreSQL's default scale) analyzed 17 times in the first
40,000 events."""
TARGET = Literal(10)
"""``default_statistics_target`` of this analyze: a sample of 3,000 rows, not 30,000. The
planner needs only the topics' frequencies and a coarse histogram of positions, and the
analyze holds up every other writer: ~20-110 ms up to 500,000 events instead of ~100-350 ms
(BENCHMARKS.md, round 13). Every column: PostgreSQL restarts ``n_mod_since_analyze``, which
decides the next one (ours and autovacuum's), only after an analyze of the whole table."""
CHECK = (
    "SELECT s.n_mod_since_analyze AS changed, greatest(c.reltuples, 0) AS rows, "
    "pg_has_role(c.relowner, 'USAGE') AS owner "
    "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
    "WHERE s.schemaname = %s AND s.relname = %s"
)
"""What a writer asks the server when its own share is reached: a maintenance read of the
writer's, once per :data:`THRESHOLD` or more events written, whatever the commands."""


class EventStatistics:
    """Analyzes ``schema.table`` from inside a writer's locked transaction when due.

    Only called under the table's lock, which serializes every writer (threads and processes
    alike), so its counters need no lock of their own."""

    def __init__(self, schema: str, table: str) -> None:
        self._table = SQL("{}.{}").format(Identifier(schema), Identifier(table))
        self._names = (schema, table)
        self._inserted = 0  # events this process inserted since it last asked the server
        self._due: float = THRESHOLD

    def inserted(self, curs: Cursor[DictRow], count: int) -> None:
        """Count ``count`` events written in ``curs``'s transaction, which holds the table's
        lock; analyze the table there when the server says it is due. If the transaction
        rolls back later, so does the analyze; the next comes a share later."""
        self._inserted += count
        if self._inserted < self._due:
            return
        self._inserted = 0
        started = time.perf_counter()
        try:  # a savepoint; in pipeline mode its end syncs, so a failure shows here
            with curs.connection.transaction():
                curs.execute(CHECK, self._names)
                row = curs.fetchone()
                row = row or {"changed": 0, "rows": 0.0, "owner": True}
                changed, rows = int(row["changed"]), float(row["rows"])
                due = THRESHOLD + SCALE * rows
                # this process asks again after its own share of what is missing
                self._due = max(THRESHOLD, due - changed) if changed < due else due
                if not row["owner"]:
                    self._due = float("inf")
                    log.warning("store.analyze_not_owner", table=".".join(self._names))
                    return
                if changed < due:
                    return
                curs.execute(SQL("SET LOCAL default_statistics_target = {}").format(TARGET))
                curs.execute(SQL("ANALYZE {}").format(self._table))
        except Error as error:
            log.warning("store.analyze_failed", table=".".join(self._names), error=str(error))
            return
        log.info(
            "store.analyzed",
            table=".".join(self._names),
            changed=changed,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
