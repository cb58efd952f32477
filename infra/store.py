"""The event store: eventsourcing on SQLite (embedded), PostgreSQL (full) or memory (tests).

The backend is chosen once, by ``CLIENTELE_DATABASE_URL`` (:mod:`infra.backends`):

* ``sqlite:///./var/clientele.db`` (default) — embedded file, created on first use;
* ``postgresql://user:password@host:port/dbname`` — psycopg 3 with a connection pool;
* ``memory://`` — in process, for fast unit tests (the same store contract).

The store's notification log is the single global order of events (the outbox).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
import structlog
from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import BaseAggregate, Snapshot
from eventsourcing.persistence import (
    Mapper,
    Notification,
    PersistenceError,
    Recording,
    StoredEvent,
)
from eventsourcing.utils import get_topic

from domain import churn_model, duplicate_review, policy, segment
from domain.customer import Customer
from domain.errors import CustomerNotFound
from domain.events import EVENT_CLASSES, CustomerEvent, Erased
from domain.personal import key_owner
from infra.backends import POSTGRES_FACTORY, store_environment
from infra.backends.base import StoreBackend
from infra.data_keys import DataKeys, MasterKeys
from infra.encoded_maps import EncodedMaps
from infra.personal_data import PersonalData, PersonalDataMapper, has_personal_data
from infra.settings import DEV_MASTER_KEYS
from infra.snapshots import Footprints
from infra.transcoder import OrjsonTranscoder

log = structlog.get_logger(__name__)
APP_NAME = "Clientele"
CUSTOMER_TOPICS = [get_topic(cls) for cls in EVENT_CLASSES]  # published on customer.events
SEGMENT_TOPICS = [get_topic(cls) for cls in segment.EVENT_CLASSES]  # never published
MODEL_TOPICS = [get_topic(cls) for cls in churn_model.EVENT_CLASSES]  # never published
POLICY_TOPICS = [get_topic(cls) for cls in policy.EVENT_CLASSES]  # never published
REVIEW_TOPICS = [get_topic(cls) for cls in duplicate_review.EVENT_CLASSES]  # never published
# what read models are fed (segments keep the care policy's versions)
FEED_TOPICS = [*CUSTOMER_TOPICS, *SEGMENT_TOPICS, *MODEL_TOPICS, *POLICY_TOPICS, *REVIEW_TOPICS]
ERASED_TOPICS = [get_topic(Erased)]
WATCHED_TOPICS = [*ERASED_TOPICS, *MODEL_TOPICS]  # what :meth:`EventStore.forget_erased` looks for
ERASED_PAGE = 1000  # watched events (erasures, model events) read per query by forget_erased
SCHEMA_LOCK_KEY = 7_470_113_201  # arbitrary, constant: "clientele schema"


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
        pool_timeout: float = 3.0,
        master_keys: MasterKeys | None = None,
    ):
        env = store_environment(database_url, pool_size=pool_size, timeout=pool_timeout)
        # The snapshot table always exists (erasure deletes from it); taking them is optional.
        env["IS_SNAPSHOTTING_ENABLED"] = "y"
        self.footprints = Footprints(snapshot_interval)
        self.database_url = database_url
        self.personal = PersonalData(OrjsonTranscoder())
        if env["PERSISTENCE_MODULE"] == POSTGRES_FACTORY:
            env["CREATE_TABLE"] = "n"  # created below, under a lock
        super().__init__(env)
        if not isinstance(self.recorder, StoreBackend):  # the one place that names the type
            msg = f"{type(self.recorder).__name__} is not a clientele backend (infra.backends)"
            raise TypeError(msg)
        self.backend: StoreBackend = self.recorder
        if env.get("CREATE_TABLE") == "n":
            self._create_tables_exclusively()
        self.encoded_maps = EncodedMaps(self.mapper.transcoder.encode)
        self.personal.keys = self.backend.data_keys(
            master_keys or MasterKeys.parse(DEV_MASTER_KEYS)
        )
        # Every erasure at or before ``_erasures_seen`` is forgotten in this process; the
        # newest of them is at ``newest_erasure`` (where the watch began, if none since).
        self._erasures_seen = self.head()  # nothing is cached yet: older erasures are moot
        self.newest_erasure = self._erasures_seen
        # The position of the newest churn-model event the watch has seen (0: none since it
        # began): a model read before then is stale (:meth:`ModelService.as_seen`).
        self.newest_fit = 0
        self._erasures_lock = threading.Lock()

    @property
    def data_keys(self) -> DataKeys:
        """Customers' data keys (create, read, shred, rotate)."""
        return self.personal.keys

    @property
    def watched(self) -> int:
        """The log position up to which :meth:`forget_erased` has looked."""
        return self._erasures_seen

    def forget_erased(self, head: int | None = None) -> None:
        """Forget the data keys, footprints and kept snapshot maps of the customers erased
        since the last call (by ANY process: the one that erases forgets at once): one small
        query (the log's head), and one more for its erasures when the head has moved. Every
        long-lived reader of the store calls it before opening events, so no key shredded
        elsewhere decrypts a copy of the erased person's data from this process's cache. The
        same query notes the newest churn-model event (:attr:`newest_fit`), so a model kept in
        memory is known stale as soon as a look has passed a newer fit. ``head``: the log's
        head as the caller has just read it (:meth:`StoreBackend.head_and_rows`), so the small
        query is not made again.

        Safe across threads: the erasures up to the head are marked seen only AFTER their keys
        are forgotten, and a caller that finds the mark behind the head waits for the one
        thread forgetting (a lock), so no thread returns while a shredded key is still held.
        Who needs the erasures themselves reads them with :meth:`erasures` up to
        :attr:`newest_erasure`."""
        if head is None:
            head = self.head()
        if head <= self._erasures_seen:  # all forgotten already (the mark moves after)
            return
        with self._erasures_lock:
            after = self._erasures_seen
            if head <= after:  # another thread forgot them while this one waited
                return
            erased, fitted = self._watch(after, head, WATCHED_TOPICS)
            self.data_keys.forget(e.originator_id.hex for _, e in erased)
            self.footprints.forget(e.originator_id for _, e in erased)
            self.encoded_maps.forget(e.originator_id for _, e in erased)
            if erased:
                self.newest_erasure = erased[-1][0]
            self.newest_fit = max(fitted, self.newest_fit)
            self._erasures_seen = head  # last: the keys are forgotten, the fit noted

    def erasures(self, after: int, until: int) -> list[tuple[int, Erased]]:
        """(position, erasure) for every ``customer.erased`` with ``after`` < position <=
        ``until``, oldest first: one query per ``ERASED_PAGE`` erasures."""
        return self._watch(after, until, ERASED_TOPICS)[0]

    def _watch(
        self, after: int, until: int, topics: list[str]
    ) -> tuple[list[tuple[int, Erased]], int]:
        """The erasures (:meth:`erasures`) among the events of ``topics`` with ``after`` <
        position <= ``until``, and the position of the newest other one (0: none)."""
        erased: list[tuple[int, Erased]] = []
        newest_other = 0
        while after < until:
            page = self.recorder.select_notifications(
                after, ERASED_PAGE, stop=until, topics=topics, inclusive_of_start=False
            )
            for notification in page:
                if notification.topic not in ERASED_TOPICS:
                    newest_other = notification.id
                    continue
                event = self.mapper.to_domain_event(notification)
                assert isinstance(event, Erased)
                erased.append((notification.id, event))
            if len(page) < ERASED_PAGE:
                break
            after = page[-1].id
        return erased, newest_other

    def construct_mapper(self) -> Mapper[UUID]:
        self.personal_mapper = PersonalDataMapper(self.construct_transcoder(), self.personal)
        return self.personal_mapper

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """eventsourcing's ``Application.save``, step for step, with the pending events of
        aggregates collected by class (:class:`_ByClass`)."""
        processing_event = _ByClass()
        processing_event.collect_events(*objs, **kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)  # eventsourcing's deprecated hook, as it calls it
        return recordings

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        """Create missing data keys for the batch in one go before the mapper needs them;
        after an erasure, forget the shredded keys (the recorder destroyed them, and the
        snapshots of the customer and of those holding copies of their data, atomically)."""
        events = processing_event.events
        owners = {key_owner(e).hex for e in events if has_personal_data(e)}
        self.data_keys.for_writing(owners)
        recordings = super()._record(processing_event)
        self.data_keys.forget(e.originator_id.hex for e in events if isinstance(e, Erased))
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
        self.encoded_maps.forget(erased)
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
        saved aggregates themselves: at most one snapshot per customer and save, its growing
        maps encoded once (:mod:`infra.encoded_maps`). A snapshot that cannot be stored is
        logged and skipped: the save has committed, and a command must not fail for a cache of
        its history."""
        if self.snapshots is None:
            return
        for aggregate in processing_event.aggregates.values():
            if not isinstance(aggregate, Customer):
                continue
            if not self.footprints.due(aggregate.id):
                self.encoded_maps.follow(aggregate.id, vars(aggregate))
                continue
            snapshot = Snapshot.take(aggregate)
            self.encoded_maps.substitute(aggregate.id, snapshot.state)
            stored = self.mapper.to_stored_event(snapshot)
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
        self.forget_erased()
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
        self.forget_erased()
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
        self.forget_erased()
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
        return list(
            self.recorder.select_notifications(
                after, limit, topics=CUSTOMER_TOPICS, inclusive_of_start=False
            )
        )

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        """Global position of one aggregate event, or None if it is not stored."""
        rows = self.backend.positioned(aggregate_id, version)
        return rows[0][0] if rows else None

    def version_at(self, aggregate_id: UUID, position: int) -> int:
        """The aggregate's newest version at positions ``<= position`` (0: none)."""
        return self.backend.version_at(aggregate_id, position)

    def positions_of(self, refs: Iterable[tuple[UUID, int]]) -> dict[tuple[UUID, int], int]:
        """Global positions of many (aggregate id, version) events, absent ones left out: a
        query per 500, where :meth:`position_of` is one per event."""
        wanted = list(refs)
        return self.backend.positions(wanted) if wanted else {}

    def history(self, customer_id: UUID) -> list[tuple[int, CustomerEvent]]:
        """A customer's events with their global positions, oldest first."""
        self.forget_erased()
        history = []
        for position, stored in self.backend.positioned(customer_id, None):
            event = self.mapper.to_domain_event(stored)
            assert isinstance(event, CustomerEvent)
            history.append((position, event))
        return history


class _ByClass(ProcessingEvent[UUID]):
    """A ``ProcessingEvent`` that recognises eventsourcing aggregates by class. The library's
    ``collect_events`` tests every object against two runtime ``Protocol``s, which Python 3.11
    checks attribute by attribute: 7 % of a registration batch's CPU (two aggregates per
    registration). Other objects take the library's path."""

    def collect_events(self, *objs: Any, **kwargs: Any) -> None:
        for obj in objs:  # in the given order, as the library does
            if isinstance(obj, BaseAggregate):
                self.events.extend(obj.collect_events())
                self.aggregates[obj.id] = obj
            else:
                super().collect_events(obj)
        super().collect_events(**kwargs)
