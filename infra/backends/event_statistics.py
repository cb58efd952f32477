"""The events table's planner statistics, kept by its writers under their own lock.

Every write takes eventsourcing's gapless ``LOCK TABLE … IN EXCLUSIVE MODE`` on the events
table. That lock conflicts with the one ``ANALYZE`` needs, and autovacuum never waits for a
lock: while writes keep coming it logs ``skipping analyze of "clientele_events" --- lock not
available`` and the table keeps no statistics at all (its ``VACUUM`` runs; only the analyze is
skipped). Without statistics the planner falls back to fixed guesses (a third of the rows for
``notification_id > $2``, 0.5 % per topic) and plans the feed's pages
(``… WHERE topic = ANY($1) AND notification_id > $2 ORDER BY notification_id LIMIT $3``, read
by the relay and the consumers every few seconds even when idle) as a parallel sequential scan
of the whole table: 75-140 ms each at 57,000 events, on both cores at once, and growing with
the store. With statistics the same page is an ordered index scan that stops at its limit:
0.04 ms at the head (BENCHMARKS.md, "Performance round 13 (issue 16): the idle feed's polls").

A writer therefore analyzes the table itself, inside its own locked transaction (a lock a
transaction holds never conflicts with its own requests, so nothing waits), once the events
changed since the last analyze exceed :data:`THRESHOLD` plus :data:`SCALE` times the table's
rows. Each writer process counts what it inserted and asks the server (one
``pg_stat_user_tables`` row) only when its own count reaches the rule, so several writers do
not analyze for each other's rows twice. The analyze is of a small sample (:data:`TARGET`)
and runs in a savepoint: if it fails, the write does not. A role that does not own the table
gets PostgreSQL's warning and no statistics (README, "The events table keeps its planner
statistics").
"""

from __future__ import annotations

import threading
import time

import structlog
from psycopg import Cursor, Error
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal

log = structlog.get_logger(__name__)

THRESHOLD = 1000
"""Changed rows before the first analyze (eventsourcing's ``autovacuum_analyze_threshold``)."""
SCALE = 1.0
"""Changed rows before the next one, as a fraction of the table's rows: once it has doubled.
Stale statistics are fine for the feed's pages (beyond the histogram the planner reads the
index's actual end); missing ones are not. Each analyze holds up every other writer, and a
young store grows fast: 0.1 (PostgreSQL's default scale) analyzed 17 times in the first
40,000 events."""
TARGET = Literal(10)
"""``default_statistics_target`` of this analyze: a sample of 3,000 rows, not 30,000. The
planner needs only the topics' frequencies and a coarse histogram of positions, and the
analyze holds up every other writer: at 500,000 events ~50-105 ms instead of ~230-350 ms
(measured on this 2-core host, loaded). Every column: PostgreSQL resets
``n_mod_since_analyze``, which decides the next one (ours and autovacuum's), only after an
analyze of the whole table."""


class EventStatistics:
    """Analyzes ``schema.table`` from inside a writer's locked transaction when due."""

    def __init__(self, schema: str, table: str) -> None:
        self._table = SQL("{}.{}").format(Identifier(schema), Identifier(table))
        self._names = (schema, table)
        self._relation = f"{schema}.{table}"
        self._lock = threading.Lock()
        self._inserted = 0  # events this process inserted since it last asked the server
        self._due = THRESHOLD

    def inserted(self, curs: Cursor[DictRow], count: int) -> bool:
        """Count ``count`` events written in ``curs``'s transaction, which holds the table's
        lock; analyze the table there when the server says it is due. True if it did."""
        with self._lock:
            self._inserted += count
            if self._inserted < self._due:
                return False
            self._inserted = 0
        curs.execute(
            "SELECT s.n_mod_since_analyze AS changed, greatest(c.reltuples, 0) AS rows "
            "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE s.schemaname = %s AND s.relname = %s",
            self._names,
        )
        row = curs.fetchone()
        changed, rows = (int(row["changed"]), float(row["rows"])) if row else (0, 0.0)
        due = int(THRESHOLD + SCALE * rows)
        analyzed = changed >= due and self._analyze(curs, changed)
        with self._lock:  # this process asks again after its own share of the rule
            self._due = max(THRESHOLD, due - changed) if changed < due else due
        return analyzed

    def _analyze(self, curs: Cursor[DictRow], changed: int) -> bool:
        started = time.perf_counter()
        try:  # a savepoint; in pipeline mode its end syncs, so a failure shows here
            with curs.connection.transaction():
                curs.execute(SQL("SET LOCAL default_statistics_target = {}").format(TARGET))
                curs.execute(SQL("ANALYZE {}").format(self._table))
        except Error as error:
            log.warning("store.analyze_failed", table=self._relation, error=str(error))
            return False
        log.info(
            "store.analyzed",
            table=self._relation,
            changed=changed,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return True
