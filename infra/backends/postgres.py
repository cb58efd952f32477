"""The PostgreSQL backend: events with a notification log that has no gaps, and snapshots.

eventsourcing's recorder locks the events table, then INSERTs; a version conflict is detected
by the primary key only after the ``bigserial`` has handed out ids, so every refused write
leaves a hole in the notification ids. Here the conflict is checked after the lock and before
the INSERT (nothing can slip in between while the table is locked), so a refused transaction
consumes no ids and positions stay contiguous — which lets consumers treat a hole as a bug.

Snapshots are single rows as large as a customer's state (megabytes for a big buyer). They are
inserted as plain parameters: eventsourcing's array of a composite type is rendered as text by
psycopg in Python, 60 ms for a 1.7 MB snapshot, against 2 ms for a parameter. Their ``state``
is compressed with lz4 where the server has it (PostgreSQL 14+): 4 ms instead of pglz's 16 ms
to store a 1.7 MB snapshot, and faster to read back.

The events recorder carries clientele's extensions (:class:`infra.backends.base.StoreBackend`):
hash links, shredded keys and dropped snapshots written under the same lock, and the feed
reads that join the links.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
)
from eventsourcing.utils import Environment, EnvType
from psycopg import Cursor, Pipeline
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from infra.backends import POOL_TIMEOUT
from infra.backends.base import (
    HistoryRow,
    Latest,
    Linked,
    LogRow,
    Positioned,
    Resume,
    as_uuid,
    positioned_rows,
    stored_rows,
    uuid_ids,
)
from infra.backends.event_statistics import EventStatistics
from infra.backends.postgres_keys import PostgresDataKeys
from infra.backends.sql import SqlBackend
from infra.data_keys import KEYS_DDL, DataKeys, MasterKeys, shred_in_transaction
from infra.pg_arrays import Bigints, Byteas, Packed, Texts, Uuids
from infra.readstore import STALE_CHECK
from infra.tamper_evidence.chain import HASHES_DDL, postgres_links

_JOINED = (
    "e.originator_version, e.topic, e.state, h.prev_hash, h.hash FROM {events} e "
    "LEFT JOIN event_hashes h ON h.originator_id = replace(e.originator_id::text, '-', '') "
    "AND h.originator_version = e.originator_version WHERE e.topic = ANY(%s) AND "
)
_LINKED = "SELECT e.notification_id, e.originator_id, " + _JOINED
_IN_LOG_ORDER = "e.notification_id > %s ORDER BY e.notification_id LIMIT %s"
# the id as text: psycopg makes no UUID object per row, and the relay needs the text
_LOG_ROWS = "SELECT e.notification_id, e.originator_id::text, " + _JOINED + _IN_LOG_ORDER


NO_JIT = "SET jit = off"
"""Run by every store connection once it opens: its statements run without JIT compilation.
The batch prefetch (:meth:`GaplessPostgresRecorder.latest`) probes each aggregate's events
after a version the planner cannot see, so its estimate grows with the table: from about 40k
events on (the full bench's size) its plan cost passed ``jit_above_cost`` and every batch
compiled it, 3.5-6 ms of a 4.8 ms statement (``EXPLAIN ANALYZE``, pg_stat_statements' JIT
times), a cost that grows with the store. The store's statements are short probes and pages,
which JIT cannot speed up: it is off for all of them. A session ``SET``, not a start-up
option: a URL's or ``PGOPTIONS``' libpq ``options`` still apply, and a pooler that refuses
start-up options (PgBouncer) still connects, in session pooling (a session setting does not
follow a client under transaction pooling)."""


def _once(method: Any) -> Any:
    """``method`` without eventsourcing's retry decorator (``functools.wraps`` keeps it).

    eventsourcing tries its reads and writes ten times, each waiting up to the pool's
    timeout for a connection: during an outage one call held a request or a loop for ten
    times that. One attempt here; outages are waited out one level up, once
    (:mod:`infra.resilience`, the API's 503 with ``Retry-After``)."""
    return getattr(method, "__wrapped__", method)


class GaplessPostgresRecorder(SqlBackend, PostgresApplicationRecorder):
    """Selected by :func:`infra.backends.store_environment` for ``postgresql://`` URLs."""

    dialect, mark, uuid_cast, position = "postgres", "%s", "::uuid", "notification_id"
    insert_events = _once(PostgresApplicationRecorder.insert_events)
    select_events = _once(PostgresApplicationRecorder.select_events)
    select_notifications = _once(PostgresApplicationRecorder.select_notifications)
    max_notification_id = _once(PostgresApplicationRecorder.max_notification_id)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.statistics = EventStatistics(self.datastore.schema, self.events_table_name)
        table = Identifier(self.datastore.schema), Identifier(self.events_table_name)
        self._conflict_statement = SQL(
            "SELECT originator_id, originator_version FROM {}.{} "
            "WHERE (originator_id, originator_version) IN "
            "(SELECT * FROM unnest(%b::uuid[], %b::bigint[])) LIMIT 1"
        ).format(*table)
        # one binary array per column: eventsourcing's array of a composite type is rendered
        # as text by psycopg in Python (13 % of the writer's CPU on the everyday mix)
        self._insert_columns = SQL(
            "INSERT INTO {}.{} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(*table)
        self._latest_snapshots = (
            f"SELECT DISTINCT ON (originator_id) originator_id, originator_version, topic, state "
            f"FROM {self.snapshots_table} WHERE originator_id = ANY(%b::uuid[]) "
            "ORDER BY originator_id, originator_version DESC"
        )
        # LATERAL: one index range scan per aggregate (a join let the planner hash the table)
        self._events_after = (
            "SELECT w.id AS originator_id, e.originator_version, e.topic, e.state "
            "FROM unnest(%b::uuid[], %b::bigint[]) AS w(id, v) CROSS JOIN LATERAL "
            "(SELECT originator_version, topic, state "
            f"FROM {self.events_table_name} "
            "WHERE originator_id = w.id AND originator_version > w.v "
            "ORDER BY originator_version) e"
        )
        self.sql_create_statements.append(SQL(HASHES_DDL))  # type: ignore[arg-type]
        self.sql_create_statements.append(SQL(KEYS_DDL["postgres"]))  # type: ignore[arg-type]
        self._positioned = SQL(
            "SELECT notification_id, originator_version, topic, state FROM {}.{} "
            "WHERE originator_id=%s ORDER BY originator_version"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self._version_at = SQL(
            "SELECT max(originator_version) FROM {}.{} "
            "WHERE originator_id=%s AND notification_id <= %s"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self._positioned_version = SQL(
            "SELECT notification_id, originator_version, topic, state FROM {}.{} "
            "WHERE originator_id=%s AND originator_version=%s ORDER BY originator_version"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))

    def data_keys(self, master: MasterKeys) -> DataKeys:
        return PostgresDataKeys(master, self.datastore, self.dialect)

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **_: Any
    ) -> None:
        self._lock_table(curs)
        columns = _columns(stored_events)
        curs.execute(self._conflict_statement, columns[:2])
        clash = curs.fetchone()
        if clash is not None:
            msg = (
                f"version {clash['originator_version']} of {clash['originator_id']} "
                "was recorded by another writer"
            )
            raise IntegrityError(msg)
        postgres_links(curs, stored_events)  # hash links, under the same lock and transaction
        shred_in_transaction(curs, stored_events, "%s", self.snapshots_table)  # erasures
        self._notify_channel(curs)
        self.statistics.inserted(curs, len(stored_events))  # autovacuum cannot: our lock
        # last on this cursor: eventsourcing reads the new positions from it
        curs.execute(self._insert_columns, columns)

    @property
    def notify_channel(self) -> str | None:
        return self.channel_name

    def id_param(self, value: UUID) -> str:
        return str(value)

    def in_log_order(self, topics: Sequence[str], after: int, limit: int) -> list[Linked]:
        return self._linked(_LINKED + _IN_LOG_ORDER, [list(topics), after, limit], len(topics))

    def log_rows(self, topics: Sequence[str], after: int, limit: int) -> list[LogRow]:
        """Plain tuples straight from psycopg (no dict, UUID or notification per row: a third
        of the relay's read CPU)."""
        statement = _LOG_ROWS.format(events=self.events_table_name)
        with (
            self.datastore.transaction(commit=False) as cursor,
            cursor.connection.cursor(row_factory=tuple_row) as rows,
        ):
            rows.execute(statement, [list(topics), after, limit])
            found: list[LogRow] = rows.fetchall()
            return found

    def by_customer(
        self, topics: Sequence[str], after: Resume, limit: int, until: int, before: UUID | None
    ) -> list[Linked]:
        where = (
            "e.notification_id <= %s AND (e.originator_id, e.originator_version) > (%s::uuid, %s)"
        )
        params: list[Any] = [list(topics), until, str(after[0]), after[1]]
        if before is not None:
            where, params = where + " AND e.originator_id < %s::uuid", [*params, str(before)]
        order = " ORDER BY e.originator_id, e.originator_version LIMIT %s"
        return self._linked(_LINKED + where + order, [*params, limit], len(topics))

    def count_after(self, topics: Sequence[str], after: int) -> int:
        query = "SELECT count(*) AS n FROM {events} e WHERE e.topic = ANY(%s) AND e.notification_id > %s"
        return self._count(query, [list(topics), after], len(topics))

    def latest(self, aggregate_ids: Sequence[UUID], versions: dict[UUID, int]) -> Latest:
        """Two fixed statements with binary id and version arrays: psycopg parses each once
        (the shared ``VALUES`` form is a new statement, parsed in Python, per batch size);
        their rows come back in binary."""
        uuid_ids(aggregate_ids)
        cold = [i for i in aggregate_ids if i not in versions]
        snapshots: dict[UUID, StoredEvent] = {}
        if cold:
            rows = self._binary_rows(self._latest_snapshots, [Uuids(cold)])
            snapshots = {as_uuid(row.originator_id): row for row in stored_rows(rows)}
        since = {i: s.originator_version for i, s in snapshots.items()} | versions
        events: dict[UUID, list[StoredEvent]] = {}
        params = [Uuids(aggregate_ids), Bigints([since.get(i, 0) for i in aggregate_ids])]
        for row in stored_rows(self._binary_rows(self._events_after, params)):
            events.setdefault(as_uuid(row.originator_id), []).append(row)
        return snapshots, events

    def _binary_rows(self, statement: str, params: Sequence[Any]) -> list[Any]:
        """Rows in binary: states arrive as their bytes and ids as 16 bytes, where the text
        form sent each state as hex for psycopg to parse back (and the server to make)."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, params, binary=True)
            return list(cursor.fetchall())

    def head_and_rows(self, aggregate_id: UUID) -> tuple[int, list[HistoryRow]]:
        """Both statements in one pipeline (one implicit transaction; under READ COMMITTED
        each statement reads its own snapshot): one checked connection and one round trip,
        where ``head()`` then :meth:`positioned` took two of each and a transaction's two
        more. The rows are read first: inserts commit in notification-id order (the
        recorder's table lock), so the head read after them is at least every row's position
        (an erasure among the rows is within the head the erasure watch looks up to). The
        rows are binary tuples, as :meth:`positioned`'s. A libpq without pipeline mode
        (before 14) sends the two statements one after the other."""
        with (
            self.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as rows,
            connection.cursor(row_factory=tuple_row) as head,
        ):
            with connection.pipeline() if Pipeline.is_supported() else nullcontext():
                rows.execute(self._positioned, (aggregate_id,), binary=True)
                head.execute(self.max_notification_id_statement)
            found = head.fetchone()
            return (found[0] or 0) if found else 0, rows.fetchall()

    def version_at(self, aggregate_id: UUID, position: int) -> int:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.row_factory = tuple_row
            cursor.execute(self._version_at, (aggregate_id, position))
            found = cursor.fetchone()
        return int(found[0] or 0) if found else 0

    def positioned(self, aggregate_id: UUID, version: int | None) -> Positioned:
        """Rows in binary, as tuples: a customer's whole history (time travel) is one query
        whose bytea states arrive as bytes, not as hex text parsed in Python."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.row_factory = tuple_row
            if version is None:
                cursor.execute(self._positioned, (aggregate_id,), binary=True)
            else:
                cursor.execute(self._positioned_version, (aggregate_id, version), binary=True)
            rows = cursor.fetchall()
        return positioned_rows(aggregate_id, rows)


def _columns(stored_events: Sequence[StoredEvent]) -> tuple[Packed, ...]:
    """The events as four column arrays (id, version, topic, state), in their order, each
    packed in one go (:mod:`infra.pg_arrays`)."""
    return (
        Uuids([as_uuid(e.originator_id) for e in stored_events]),
        Bigints([e.originator_version for e in stored_events]),
        Texts([e.topic for e in stored_events]),
        Byteas([e.state for e in stored_events]),
    )


class SnapshotRecorder(PostgresAggregateRecorder):
    """The snapshot table's recorder: one plain INSERT per snapshot (module docstring)."""

    insert_events = _once(PostgresAggregateRecorder.insert_events)
    select_events = _once(PostgresAggregateRecorder.select_events)

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self._insert_statement = SQL(
            "INSERT INTO {}.{} (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s)"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self.sql_create_statements.append(
            SQL(
                "DO $$ BEGIN ALTER TABLE {}.{} ALTER COLUMN state SET COMPRESSION lz4; "
                "EXCEPTION WHEN feature_not_supported OR syntax_error THEN NULL; END $$"
            ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        )

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **_: Any
    ) -> None:
        curs.executemany(
            self._insert_statement,
            [(e.originator_id, e.originator_version, e.topic, e.state) for e in stored_events],
        )


def _without_jit(configure: Callable[[Any], None] | None) -> Callable[[Any], None]:
    """The pool's ``configure`` (eventsourcing's: autocommit, idle timeout), then
    :data:`NO_JIT`."""

    def configured(connection: Any) -> None:
        if configure is not None:
            configure(connection)
        connection.execute(NO_JIT)
        if not connection.autocommit:  # the pool keeps only idle connections
            connection.commit()

    return configured


class Factory(PostgresFactory):
    """``PERSISTENCE_MODULE=infra.backends.postgres:Factory``: eventsourcing's PostgreSQL factory,
    with :class:`SnapshotRecorder` for snapshots (events use the application recorder,
    ``APPLICATION_RECORDER_TOPIC``).

    Its pool is made like the read store's (:class:`infra.readstore.PostgresReadStore`): one
    connection kept open, more on demand (:func:`infra.backends.store_environment`), a caller
    waits for one at most ``CLIENTELE_POOL_TIMEOUT`` seconds, and a reconnection is tried for
    as long, then
    started afresh by the next caller (psycopg_pool's default, five minutes of ever longer
    pauses, kept a pool away for half a minute after the server was back)."""

    aggregate_recorder_class = SnapshotRecorder  # type: ignore[assignment]
    POSTGRES_CONNECTION_OPTIONS = "POSTGRES_CONNECTION_OPTIONS"

    def __init__(self, env: Environment | EnvType | None) -> None:
        """Also pass the database URL's query parameters (``?sslmode=verify-full&sslrootcert=…``,
        any libpq parameter) to every connection: eventsourcing only takes host, port, user,
        password and database name. Every connection runs without JIT (:data:`NO_JIT`)."""
        super().__init__(env)
        pool = self.datastore.pool
        options = dict(parse_qsl(self.env.get(self.POSTGRES_CONNECTION_OPTIONS) or ""))
        if options and isinstance(pool.kwargs, dict):
            pool.kwargs.update(options)
        pool._configure = _without_jit(pool._configure)
        # eventsourcing sets check_connection (PRE_PING); ours also checks the other pools
        # when it finds a broken one. psycopg_pool takes ``check`` only at construction.
        pool._check = STALE_CHECK
        STALE_CHECK.watch(pool)
        pool.timeout = pool.reconnect_timeout = float(self.env.get(POOL_TIMEOUT) or pool.timeout)
