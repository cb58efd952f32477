"""The events table gets planner statistics from its writers (infra/backends/event_statistics.py).

Autovacuum is switched off for the table here: its analyze cannot take its lock while writers
hold the gapless one anyway (it logs "skipping analyze … lock not available"), so whatever
statistics the table has come from the writers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Literal
from structlog.testing import capture_logs

from infra.backends import event_statistics
from infra.backends.postgres import _LOG_ROWS
from infra.store import EventStore

TOPICS = ["domain.events:Registered", "domain.events:Tagged", "domain.events:Contacted"]
DEADLINE = 30.0  # seconds: the server's activity counts reach pg_stat within a few


@pytest.fixture
def store(postgres_url: str) -> Iterator[EventStore]:
    store = EventStore(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE clientele_events SET (autovacuum_enabled = false)")
    yield store
    store.close()


def _batch(size: int) -> list[StoredEvent]:
    return [StoredEvent(uuid4(), 1, TOPICS[i % 3], b'{"n": %d}' % i) for i in range(size)]


def _analyzed(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relname = 'clientele_events'"
        ).fetchone()
    return bool(row and row[0])


def _write_until_analyzed(store: EventStore, url: str) -> int:
    """Batches of 500 events until the table was analyzed; how many events that took."""
    written, deadline = 0, time.monotonic() + DEADLINE
    while not _analyzed(url):
        assert time.monotonic() < deadline, f"not analyzed after {written} events"
        store.recorder.insert_events(_batch(500))
        written += 500
        time.sleep(0.2)
    return written


def _counts_once_flushed(url: str, written: int) -> tuple[int, int]:
    """(rows inserted, rows changed since the last analyze) once the writer's backend has
    reported all ``written`` inserts (PostgreSQL flushes them within seconds when idle)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT n_tup_ins, n_mod_since_analyze FROM pg_stat_user_tables "
                "WHERE relname = 'clientele_events'"
            ).fetchone()
        assert row is not None
        if row[0] >= written or time.monotonic() > deadline:
            return int(row[0]), int(row[1])
        time.sleep(0.5)


def test_writers_give_the_events_table_statistics(store: EventStore, postgres_url: str) -> None:
    written = _write_until_analyzed(store, postgres_url)
    inserted, changed = _counts_once_flushed(postgres_url, written)
    store.recorder.insert_events(_batch(8000))  # the planner's choices matter at some size
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_stats WHERE tablename = 'clientele_events'"
            ).fetchall()
        }
        head = conn.execute("SELECT max(notification_id) FROM clientele_events").fetchone()
        statement = SQL(_LOG_ROWS.format(events="clientele_events"))
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                SQL("EXPLAIN ") + statement, (TOPICS, head[0] if head else 0, 500)
            ).fetchall()
        )
    assert written <= 3000  # the first analyze comes after ~1,000 changed rows
    # an analyze of the whole table restarts the count that decides the next one (a column
    # list would not: ours and autovacuum's would then find it due forever)
    assert inserted == written and changed < written
    assert {"notification_id", "topic", "originator_id"} <= columns
    # the feed's page at the head: an ordered walk of the position index that stops at its
    # limit, not a scan and sort of the table (what it was without statistics)
    assert "clientele_events_notification_id_idx" in plan, plan
    assert "Sort" not in plan and "Seq Scan on clientele_events" not in plan, plan


def test_a_failing_analyze_does_not_fail_the_write(
    store: EventStore, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_statistics, "TARGET", Literal(0))  # outside 1-10,000: refused
    with capture_logs() as logs:
        written = 0
        deadline = time.monotonic() + DEADLINE
        while not any(e["event"] == "store.analyze_failed" for e in logs):
            assert time.monotonic() < deadline, f"no analyze tried after {written} events"
            store.recorder.insert_events(_batch(500))
            written += 500
            time.sleep(0.2)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        stored = conn.execute("SELECT count(*) FROM clientele_events").fetchone()
    assert stored == (written,)  # every batch committed, the one whose analyze failed too
    assert not _analyzed(postgres_url)
