"""The event store: eventsourcing on SQLite (embedded), PostgreSQL (full) or memory (tests).

The backend is chosen by ``CLIENTELE_DATABASE_URL``:

* ``sqlite:///./var/clientele.db`` (default) — embedded file, created on first use;
* ``postgresql://user:password@host:port/dbname`` — psycopg 3 with a connection pool;
* ``memory://`` — eventsourcing's in-process recorder, for fast unit tests.

The store's notification log is the single global order of events (the outbox).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

import psycopg
import structlog
from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import (
    Mapper,
    Notification,
    PersistenceError,
    Recording,
    StoredEvent,
)
from eventsourcing.popo import POPOAggregateRecorder, POPOApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from domain import segment
from domain.customer import Customer
from domain.errors import CustomerNotFound
from domain.events import EVENT_CLASSES, CustomerEvent, Erased
from domain.personal import key_owner
from infra.data_keys import DataKeys, MasterKeys, MemoryDataKeys, SqlDataKeys
from infra.personal_data import PersonalData, PersonalDataMapper, has_personal_data
from infra.settings import DEV_MASTER_KEYS
from infra.snapshots import Footprints
from infra.transcoder import OrjsonTranscoder

log = structlog.get_logger(__name__)
APP_NAME = "Clientele"
CUSTOMER_TOPICS = [get_topic(cls) for cls in EVENT_CLASSES]  # published on customer.events
SEGMENT_TOPICS = [get_topic(cls) for cls in segment.EVENT_CLASSES]  # never published
FEED_TOPICS = [*CUSTOMER_TOPICS, *SEGMENT_TOPICS]  # what read models are fed
SCHEMA_LOCK_KEY = 7_470_113_201  # arbitrary, constant: "clientele schema"
POSTGRES_FACTORY = "infra.pg_recorder:Factory"  # eventsourcing's, with our snapshot recorder


def store_environment(database_url: str, *, pool_size: int = 5) -> dict[str, str]:
    """Translate a database URL into eventsourcing's environment variables."""
    parts = urlsplit(database_url)
    env = {"TRANSCODER_TOPIC": "infra.transcoder:OrjsonTranscoder"}
    if parts.scheme == "memory":
        env["PERSISTENCE_MODULE"] = "eventsourcing.popo"
    elif parts.scheme == "sqlite":
        path = unquote(database_url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        env |= {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            "APPLICATION_RECORDER_TOPIC": "infra.hash_chain:ChainedSQLiteRecorder",
        }
    elif parts.scheme in ("postgresql", "postgres"):
        env |= {
            "PERSISTENCE_MODULE": POSTGRES_FACTORY,
            "POSTGRES_DBNAME": parts.path.lstrip("/") or "clientele",
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(pool_size),
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_CONNECT_TIMEOUT": "10",
            "POSTGRES_PRE_PING": "y",
            "APPLICATION_RECORDER_TOPIC": "infra.pg_recorder:GaplessPostgresRecorder",
        }
    else:
        msg = f"unsupported database URL scheme {parts.scheme!r} (use sqlite, postgresql, memory)"
        raise ValueError(msg)
    return env


class EventStore(Application[UUID]):
    """eventsourcing application holding customers and their index aggregates.

    Personal data is sealed with per-customer keys (:mod:`infra.personal_data`); the keys live
    in ``customer_keys`` beside the events, wrapped by ``master_keys``. Customers are
    snapshotted by the policy of :mod:`infra.snapshots` (``snapshot_interval`` 0: never).
    """

    name = APP_NAME

    def __init__(
        self,
        database_url: str,
        *,
        snapshot_interval: int = 0,
        pool_size: int = 5,
        master_keys: MasterKeys | None = None,
    ):
        env = store_environment(database_url, pool_size=pool_size)
        # The snapshot table always exists (erasure deletes from it); taking them is optional.
        env["IS_SNAPSHOTTING_ENABLED"] = "y"
        self.footprints = Footprints(snapshot_interval)
        self.database_url = database_url
        self.personal = PersonalData(OrjsonTranscoder())
        if env["PERSISTENCE_MODULE"] == POSTGRES_FACTORY:
            env["CREATE_TABLE"] = "n"  # created below, under a lock
        super().__init__(env)
        if env.get("CREATE_TABLE") == "n":
            self._create_tables_exclusively()
        self.personal.keys = self._data_keys(master_keys or MasterKeys.parse(DEV_MASTER_KEYS))

    @property
    def data_keys(self) -> DataKeys:
        """Customers' data keys (create, read, shred, rotate)."""
        return self.personal.keys

    def construct_mapper(self) -> Mapper[UUID]:
        self.personal_mapper = PersonalDataMapper(self.construct_transcoder(), self.personal)
        return self.personal_mapper

    def _data_keys(self, master: MasterKeys) -> DataKeys:
        recorder = self.recorder
        if isinstance(recorder, PostgresApplicationRecorder):
            return SqlDataKeys(master, recorder.datastore, "postgres")
        if isinstance(recorder, SQLiteApplicationRecorder):
            return SqlDataKeys(master, recorder.datastore, "sqlite")
        return MemoryDataKeys(master)

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        """Create missing data keys for the batch in one go before the mapper needs them;
        after an erasure, forget the shredded keys (the recorder destroyed them, and the
        snapshots of the customer and of those holding copies of their data, atomically)."""
        events = processing_event.events
        owners = {key_owner(e).hex for e in events if has_personal_data(e)}
        self.data_keys.for_writing(owners)
        recordings = super()._record(processing_event)
        erasures = [e for e in events if isinstance(e, Erased)]
        if erasures:
            erased = [e.originator_id.hex for e in erasures]
            if isinstance(self.data_keys, MemoryDataKeys):  # what SQL recorders do atomically
                self.data_keys.shred(erased)
                holders = [UUID(h).hex for e in erasures for h in e.copies_at]
                self._drop_memory_snapshots(erased + holders)
            self.data_keys.forget(erased)
        self._count_footprints(recordings)
        return recordings

    def _count_footprints(self, recordings: list[Recording[UUID]]) -> None:
        """Add the customer events just stored to their customers' footprints (learnt from
        the store when unknown); erased customers' snapshots are gone, so are their footprints."""
        stored: dict[UUID, list[StoredEvent]] = {}
        erased = []
        for recording in recordings:
            event = recording.domain_event
            if isinstance(event, CustomerEvent):
                stored.setdefault(event.originator_id, []).append(recording.notification)
                if isinstance(event, Erased):
                    erased.append(event.originator_id)
        self.footprints.forget(erased)
        for customer_id, rows in stored.items():
            if customer_id in erased:
                continue
            rows.sort(key=lambda row: row.originator_version)
            if rows[0].originator_version == 1:
                self.footprints.loaded(customer_id, None, rows)
            elif not self.footprints.extend(customer_id, rows):
                snapshot = self.newest_snapshot(customer_id)
                after = snapshot.originator_version if snapshot is not None else 0
                self.footprints.loaded(
                    customer_id, snapshot, self.stored_events(customer_id, after)
                )

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Snapshot the customers just saved that are due (:mod:`infra.snapshots`), from the
        saved aggregates themselves: at most one snapshot per customer and save. A snapshot
        that cannot be stored is logged and skipped: the save has committed, and a command
        must not fail for a cache of its history."""
        if self.snapshots is None:
            return
        for aggregate in processing_event.aggregates.values():
            if isinstance(aggregate, Customer) and self.footprints.due(aggregate.id):
                stored = self.mapper.to_stored_event(Snapshot.take(aggregate))
                try:
                    self.snapshots.recorder.insert_events([stored])
                except PersistenceError as error:  # the events are committed: only a cache lost
                    log.warning(
                        "store.snapshot_failed", customer_id=str(aggregate.id), error=repr(error)
                    )
                    self.footprints.forget([aggregate.id])
                    continue
                self.footprints.snapshotted(aggregate.id, aggregate.version, len(stored.state))

    def newest_snapshot(self, aggregate_id: UUID) -> StoredEvent | None:
        """The stored form of an aggregate's newest snapshot, if it has one."""
        if self.snapshots is None:
            return None
        rows = self.snapshots.recorder.select_events(aggregate_id, desc=True, limit=1)
        return rows[0] if rows else None

    def stored_events(self, aggregate_id: UUID, after: int = 0) -> list[StoredEvent]:
        """The stored form of an aggregate's events with versions above ``after``, in order."""
        return list(self.recorder.select_events(aggregate_id, gt=after or None))

    def _drop_memory_snapshots(self, customer_ids: list[str]) -> None:
        """``memory://`` only: forget erased customers' snapshots (their sealed state is
        unreadable now, and loading must replay the events instead)."""
        recorder: Any = self.snapshots.recorder if self.snapshots else None
        if isinstance(recorder, POPOAggregateRecorder):
            for customer in customer_ids:
                recorder._stored_events_index.pop(str(UUID(hex=customer)), None)

    def _create_tables_exclusively(self) -> None:
        """CREATE … IF NOT EXISTS is not safe when several processes start at once (catalog
        races); a transaction-level advisory lock makes table creation one-at-a-time."""
        recorders: list[Any] = [self.recorder]
        if self.snapshots is not None:
            recorders.append(self.snapshots.recorder)
        with psycopg.connect(self.database_url, autocommit=False) as connection:
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            for recorder in recorders:
                recorder.create_table()
            connection.commit()

    # ----------------------------------------------------------------- reading

    def customer(self, customer_id: UUID, *, version: int | None = None) -> Customer:
        """Load a customer (optionally as of a version); raise :class:`CustomerNotFound`."""
        try:
            customer: Any = self.repository.get(customer_id, version=version)
        except AggregateNotFoundError:
            raise CustomerNotFound(customer_id) from None
        if not isinstance(customer, Customer):
            raise CustomerNotFound(customer_id)
        return customer

    def customer_as_of(self, customer_id: UUID, when: datetime) -> Customer:
        """Fold a customer's events recorded at or before ``when`` (what we knew then),
        starting from the newest snapshot whose last event was recorded by then."""
        customer: Any = None
        after: int | None = None
        for snapshot in self.snapshots.get(customer_id, desc=True) if self.snapshots else ():
            if snapshot.state.get("_modified_on", snapshot.timestamp) <= when:  # type: ignore[attr-defined]
                customer, after = snapshot.mutate(None), snapshot.originator_version  # type: ignore[attr-defined]
                break
        for event in self.events.get(customer_id, gt=after):
            if event.timestamp > when:  # type: ignore[attr-defined]
                break
            customer = event.mutate(customer)  # type: ignore[attr-defined]
        if not isinstance(customer, Customer):
            raise CustomerNotFound(customer_id)
        return customer

    def customer_events(self, customer_id: UUID) -> Iterator[CustomerEvent]:
        """Every stored event of a customer, oldest first."""
        for event in self.events.get(customer_id):
            assert isinstance(event, CustomerEvent)
            yield event

    @property
    def events_table(self) -> str:
        """Name of the table holding stored events (differs per backend)."""
        name: str = getattr(self.recorder, "events_table_name", "")
        return name

    def head(self) -> int:
        """Position of the newest event in the notification log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def notifications(self, after: int, limit: int) -> list[Notification]:
        """Up to ``limit`` notifications with position > ``after``."""
        return list(self.recorder.select_notifications(after, limit, inclusive_of_start=False))

    def customer_notifications(self, after: int, limit: int) -> list[Notification]:
        """Up to ``limit`` customer events (index aggregates left out) after ``after``."""
        return self.notifications_of(CUSTOMER_TOPICS, after, limit)

    def notifications_of(self, topics: list[str], after: int, limit: int) -> list[Notification]:
        """Up to ``limit`` events of the given topics after ``after``, in log order."""
        return list(
            self.recorder.select_notifications(
                after, limit, topics=topics, inclusive_of_start=False
            )
        )

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        """Global position of one aggregate event, or None if it is not stored."""
        rows = self._positioned(aggregate_id, version)
        return rows[0][0] if rows else None

    def history(self, customer_id: UUID) -> list[tuple[int, CustomerEvent]]:
        """A customer's events with their global positions, oldest first."""
        history = []
        for position, stored in self._positioned(customer_id):
            event = self.mapper.to_domain_event(stored)
            assert isinstance(event, CustomerEvent)
            history.append((position, event))
        return history

    def _positioned(
        self, aggregate_id: UUID, version: int | None = None
    ) -> list[tuple[int, StoredEvent]]:
        """(position, stored event) rows of one aggregate; eventsourcing has no such query."""
        recorder = self.recorder
        where_version = version is not None
        if isinstance(recorder, PostgresApplicationRecorder):
            statement = SQL(
                "SELECT notification_id, originator_version, topic, state FROM {}.{} "
                "WHERE originator_id=%s"
                + (" AND originator_version=%s" if where_version else "")
                + " ORDER BY originator_version"
            ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
            params: tuple[Any, ...] = (aggregate_id, version) if where_version else (aggregate_id,)
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(statement, params)
                rows = [
                    (r["notification_id"], r["originator_version"], r["topic"], r["state"])
                    for r in cursor.fetchall()
                ]
        elif isinstance(recorder, SQLiteApplicationRecorder):
            query = (
                f"SELECT rowid, originator_version, topic, state FROM {recorder.events_table_name} "
                "WHERE originator_id=?"
                + (" AND originator_version=?" if where_version else "")
                + " ORDER BY originator_version"
            )
            params = (aggregate_id.hex, version) if where_version else (aggregate_id.hex,)
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(query, params)
                rows = [tuple(r) for r in cursor.fetchall()]
        else:
            assert isinstance(recorder, POPOApplicationRecorder)
            everything = recorder.select_notifications(None, recorder.max_notification_id() or 0)
            rows = [
                (n.id, n.originator_version, n.topic, n.state)
                for n in everything
                if n.originator_id == aggregate_id
                and (not where_version or n.originator_version == version)
            ]
        return [
            (int(position), StoredEvent(aggregate_id, int(v), topic, bytes(state)))
            for position, v, topic, state in rows
        ]
