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
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier, Literal
from structlog.testing import capture_logs

from infra.backends import event_statistics
from infra.backends.postgres import _LOG_ROWS
from infra.store import EventStore

TOPICS = ["domain.events:Registered", "domain.events:Tagged", "domain.events:Contacted"]
DEADLINE = 30.0  # seconds: a backend reports its counts to pg_stat within ~10 s when idle


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


def _write(store: EventStore, batches: int) -> None:
    for _ in range(batches):
        store.recorder.insert_events(_batch(500))


def _one_share_then_due(store: EventStore, url: str) -> None:
    """THRESHOLD events, and their count reported to pg_stat, then THRESHOLD more: the writer
    asks the server at 1,000 of its own (not due yet: its count lags, and the last batch is
    not in it) and again at 2,000, when it is due."""
    _write(store, 2)
    assert not _analyzed(url)
    _counts_once_flushed(url, 1000)
    _write(store, 2)


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
    _one_share_then_due(store, postgres_url)
    assert _analyzed(postgres_url)
    inserted, changed = _counts_once_flushed(postgres_url, 2000)
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
    # an analyze of the whole table restarts the count that decides the next one (a column
    # list would not: ours and autovacuum's would then find it due forever)
    assert (inserted, changed) == (2000, 500)
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
        _one_share_then_due(store, postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        stored = conn.execute("SELECT count(*) FROM clientele_events").fetchone()
    assert [e["event"] for e in logs if e["event"].startswith("store.")] == ["store.analyze_failed"]
    assert stored == (2000,)  # every batch committed, the one whose analyze failed too
    assert not _analyzed(postgres_url)


def test_a_role_that_does_not_own_the_table_stops_asking(
    store: EventStore, postgres_url: str
) -> None:
    role = f"writer_{uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(SQL("CREATE ROLE {} LOGIN").format(Identifier(role)))
    statistics = event_statistics.EventStatistics("public", "clientele_events")
    try:
        with (
            psycopg.connect(postgres_url, user=role, row_factory=dict_row) as writer,
            capture_logs() as logs,
            writer.cursor() as curs,
        ):
            statistics.inserted(curs, 1000)  # its share: asks, learns it cannot analyze
            statistics.inserted(curs, 10**6)  # never asks again
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(SQL("DROP ROLE {}").format(Identifier(role)))
    assert [e["event"] for e in logs] == ["store.analyze_not_owner"]
