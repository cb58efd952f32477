"""One contract for the event store, run against every backend: PostgreSQL, SQLite and the
in-memory one the unit tests use (it skips, explicitly, only what needs a second store on the
same database: each ``memory://`` store is its own)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest

from commands import messages as m
from commands.service import CommandService, Context, Outcome
from domain import errors
from infra.bulk_load import load_many
from infra.feed_queries import START, by_customer, in_log_order
from infra.store import EventStore

WRITERS = 8
SHARED = pytest.mark.backends("sqlite", "postgres")  # a second store can open the same database
T = TypeVar("T")


@pytest.mark.backends("memory", "sqlite", "postgres")
class TestStore:
    """Behaviour every event store backend must show (runs once per ``backend``, the
    in-memory one included). Tests that need a second store on the same database run on the
    backends that have one (``SHARED``): a ``memory://`` store is its own database."""

    @pytest.fixture
    def store(self, database_url: str) -> Iterator[EventStore]:
        store = EventStore(database_url, snapshot_interval=5)
        yield store
        store.close()

    @pytest.fixture
    def service(self, store: EventStore) -> CommandService:
        return CommandService(store, default_region="DE", index_key="contract")

    ctx = Context(actor="contract", correlation_id="corr")

    # ------------------------------------------------------------- helpers

    def race(
        self, database_url: str, work: Callable[[CommandService, int], T]
    ) -> list[T | BaseException]:
        """Run ``work`` in WRITERS threads, each with its own store and connections, at once."""
        barrier = threading.Barrier(WRITERS)
        results: list[T | BaseException] = [RuntimeError("not run")] * WRITERS

        def run(index: int) -> None:
            store = EventStore(database_url, snapshot_interval=5)
            service = CommandService(
                store, default_region="DE", index_key="contract", retries=WRITERS
            )
            try:
                barrier.wait(timeout=30)
                results[index] = work(service, index)
            except BaseException as error:
                results[index] = error
            finally:
                store.close()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        return results

    def assert_log_has_no_gaps(self, store: EventStore) -> None:
        head = store.head()
        assert [n.id for n in store.notifications(0, head + 10)] == list(range(1, head + 1))

    # ---------------------------------------------------------------- tests

    def test_round_trip_positions_and_log(self, service: CommandService, store: EventStore) -> None:
        cid = service.execute(
            m.RegisterCustomer(name="Ann", email="ann@example.com"), self.ctx
        ).customer_id
        assert cid
        tagged = service.execute(m.TagCustomer(customer_id=cid, tag="VIP"), self.ctx)
        assert tagged.position == store.head() == store.position_of(cid, 2)
        assert store.position_of(cid, 99) is None
        history = store.history(cid)
        assert [(e.originator_version, e.TYPE) for _, e in history] == [
            (1, "customer.registered"),
            (2, "customer.tagged"),
        ]
        assert [p for p, _ in history] == [store.position_of(cid, 1), tagged.position]
        refs = [(cid, 2), (cid, 99), (cid, 1), (cid, 2)]
        assert store.positions_of(refs) == {(cid, 1): history[0][0], (cid, 2): tagged.position}
        customer = store.customer(cid)
        assert (customer.email, customer.tags, customer.version) == ("ann@example.com", ["vip"], 2)
        self.assert_log_has_no_gaps(store)

    def test_events_grouped_by_customer_for_rebuilds(
        self, service: CommandService, store: EventStore
    ) -> None:
        ids = [
            service.execute(m.RegisterCustomer(name=f"C{i}", email=f"c{i}@example.com"), self.ctx)
            for i in range(3)
        ]
        customers = [o.customer_id for o in ids if o.customer_id is not None]
        for round_ in range(3):  # interleaved in the log: c0, c1, c2, c0, c1, …
            for cid in customers:
                service.execute(m.TagCustomer(customer_id=cid, tag=f"t{round_}"), self.ctx)
        head = store.head()
        service.execute(m.TagCustomer(customer_id=customers[0], tag="late"), self.ctx)
        seen, after = [], START
        while batch := by_customer(store, after, 2, head):  # resumes mid-customer
            seen += batch
            last = batch[-1][0]
            after = (UUID(str(last.originator_id)), last.originator_version)
            assert len(seen) <= 12
        # customer events only (no email index rows), grouped, in version order, none after head
        assert [(n.originator_id, n.originator_version) for n, _ in seen] == sorted(
            (cid, version) for cid in customers for version in range(1, 5)
        )
        logged = in_log_order(store, 0, 100)
        assert [n.id for n, _ in logged] == sorted(n.id for n, _ in logged)
        assert len(logged) == 13  # the late one too
        assert sorted((n.id, chain) for n, chain in seen) == [
            (n.id, chain) for n, chain in logged if n.id <= head
        ]
        low, high = sorted(customers)[:2]  # a range of customers: from low, below high
        ranged = by_customer(store, (low, 0), 100, head, before=high)
        assert [(n.originator_id, n.originator_version) for n, _ in ranged] == [
            (low, version) for version in range(1, 5)
        ]
        assert all(chain is not None for _, chain in logged)  # each with its hash link

    def buyer(self, service: CommandService) -> UUID:
        """A customer with 11 purchases: 13 events, snapshots at versions 5 and 10."""
        cid = service.execute(m.RegisterCustomer(name="Ann"), self.ctx).customer_id
        assert cid
        for i in range(11):
            service.execute(
                m.RecordPurchase(customer_id=cid, order_id=f"o{i}", amount="1.25", currency="EUR"),
                self.ctx,
            )
        return cid

    def test_time_travel_and_snapshots(self, service: CommandService, store: EventStore) -> None:
        cid = self.buyer(service)
        events = list(store.customer_events(cid))
        assert len(events) == 13  # registered, 11 purchases, first purchase made them "new"
        assert len(store.customer(cid, version=6).purchases) == 4
        assert store.customer_as_of(cid, events[4].timestamp).version == 5
        assert store.snapshots is not None
        assert [s.originator_version for s in store.snapshots.get(cid)] == [5, 10]
        travelled = [store.customer_as_of(cid, e.timestamp).version for e in events]
        assert travelled == list(range(1, 14))
        other = service.execute(m.RegisterCustomer(name="Bo"), self.ctx).customer_id
        assert other
        loaded = load_many(store, [cid, other, uuid4(), cid])
        assert sorted(loaded) == sorted([cid, other])
        assert vars(loaded[other]) == vars(store.customer(other))

    def test_the_head_is_read_with_one_history(
        self, service: CommandService, store: EventStore
    ) -> None:
        """``head_and_rows`` (time travel's one exchange): the log's head, and the customer's
        rows as ``positioned`` gives them, in version order; an unknown id has none."""
        cid = self.buyer(service)
        assert service.execute(m.RegisterCustomer(name="Bo"), self.ctx).customer_id  # head moves
        head, rows = store.backend.head_and_rows(cid)
        assert head == store.head() > rows[-1][0]
        positioned = store.backend.positioned(cid, None)
        assert rows == [(p, e.originator_version, e.topic, e.state) for p, e in positioned]
        assert [version for _, version, _, _ in rows] == list(range(1, 14))
        assert store.backend.head_and_rows(uuid4()) == (head, [])

    def test_version_at_is_the_newest_version_up_to_a_position(
        self, service: CommandService, store: EventStore
    ) -> None:
        """``version_at``: of one customer, the newest version at or before each position
        (other customers' events in between change nothing); 0 before its first event and
        for an unknown id."""
        cid = self.buyer(service)
        other = service.execute(m.RegisterCustomer(name="Bo"), self.ctx).customer_id
        assert other is not None
        service.execute(m.TagCustomer(customer_id=cid, tag="late"), self.ctx)
        history = store.backend.positioned(cid, None)
        first = history[0][0]
        assert store.version_at(cid, first - 1) == 0
        for (position, event), following in zip(history, [*history[1:], None], strict=True):
            assert store.version_at(cid, position) == event.originator_version
            if following is not None and following[0] > position + 1:
                assert store.version_at(cid, following[0] - 1) == event.originator_version
        assert store.version_at(cid, store.head()) == history[-1][1].originator_version == 14
        assert store.version_at(uuid4(), store.head()) == 0

    def test_no_history_row_is_past_its_head_under_concurrent_writes(
        self, service: CommandService, store: EventStore
    ) -> None:
        """Events committed while ``head_and_rows`` runs are never in its rows without being
        within its head: the erasure watch looks up to that head before the rows are opened
        (on PostgreSQL the rows must be read before the head)."""
        cid = self.buyer(service)
        stop = threading.Event()

        def write() -> None:
            for i in range(2_000):  # bounded: about 2 s of writes
                if stop.is_set():
                    return
                contact = m.RecordContact(
                    customer_id=cid, channel="email", direction="inbound", summary=f"c{i}"
                )
                service.execute(contact, self.ctx)

        writers = [threading.Thread(target=write) for _ in range(2)]
        for writer in writers:
            writer.start()
        try:
            past_head = [
                (head, rows[-1][0])
                for head, rows in (store.backend.head_and_rows(cid) for _ in range(1_000))
                if rows[-1][0] > head
            ]
        finally:
            stop.set()
            for writer in writers:
                writer.join(timeout=60)
        assert past_head == []

    @SHARED
    def test_a_reopened_store_reads_from_the_snapshots(
        self, service: CommandService, store: EventStore
    ) -> None:
        cid = self.buyer(service)
        events = list(store.customer_events(cid))
        reopened = EventStore(store.database_url, snapshot_interval=5)
        try:
            assert vars(reopened.customer(cid)) == vars(store.customer(cid))
            travelled = [reopened.customer_as_of(cid, e.timestamp).version for e in events]
            assert travelled == list(range(1, 14))  # from the snapshots, then events
            other = service.execute(m.RegisterCustomer(name="Bo"), self.ctx).customer_id
            assert other
            loaded = load_many(reopened, [cid, other, uuid4(), cid])
            assert sorted(loaded) == sorted([cid, other])
            assert vars(loaded[cid]) == vars(store.customer(cid))
            assert vars(loaded[other]) == vars(store.customer(other))
        finally:
            reopened.close()

    def test_erasure_shreds_the_key_and_drops_snapshots_with_it(
        self, service: CommandService, store: EventStore
    ) -> None:
        cid = self.buyer(service)
        assert store.snapshots is not None and list(store.snapshots.get(cid))
        assert store.data_keys.for_reading(cid.hex) is not None
        erased = service.execute(m.EraseCustomer(customer_id=cid), self.ctx)
        assert list(store.snapshots.get(cid)) == []  # sealed state no one can open: gone
        store.data_keys.clear_cache()  # as a fresh process
        assert store.data_keys.for_reading(cid.hex) is None
        assert store.customer(cid).version == erased.version  # folded from the events
        links = [chain for _, chain in by_customer(store, START, 100, store.head())]
        assert len(links) == 14 and all(chain is not None for chain in links)

    def test_batch_is_one_transaction(self, service: CommandService, store: EventStore) -> None:
        head = store.head()
        batch: list[m.Command] = [
            m.RegisterCustomer(name=f"C{i}", email=f"c{i}@example.com") for i in range(50)
        ]
        batch.append(m.RegisterCustomer(name="dup", email="c1@example.com"))
        outcomes = service.execute_batch(batch, self.ctx)
        assert [o.status for o in outcomes].count("accepted") == 50
        assert isinstance(outcomes[-1].problem, errors.EmailTaken)
        positions = [n.id for n in store.notifications(head, 1000)]
        assert positions == list(range(head + 1, head + 1 + 100))  # customer + claimed each
        registered = [
            n.id for n in store.notifications(head, 1000) if n.topic.endswith(":Registered")
        ]
        assert [o.position for o in outcomes[:50]] == registered

    @SHARED
    def test_writers_racing_on_one_customer(
        self, service: CommandService, store: EventStore, database_url: str
    ) -> None:
        cid = service.execute(m.RegisterCustomer(name="Contended"), self.ctx).customer_id
        assert cid

        def guarded(svc: CommandService, index: int) -> Outcome:
            return svc.execute(
                m.TagCustomer(customer_id=cid, tag=f"g{index}", expected_version=1), self.ctx
            )

        results = self.race(database_url, guarded)
        winners = [r for r in results if isinstance(r, Outcome)]
        assert len(winners) == 1, results
        assert all(isinstance(r, errors.VersionConflict) for r in results if r not in winners)

        def unguarded(svc: CommandService, index: int) -> Outcome:
            return svc.execute(m.TagCustomer(customer_id=cid, tag=f"u{index}"), self.ctx)

        results = self.race(database_url, unguarded)
        assert all(isinstance(r, Outcome) for r in results), results
        versions = sorted(r.version or 0 for r in results if isinstance(r, Outcome))
        assert versions == list(range(3, 3 + WRITERS))  # every write landed, none lost
        assert len(store.customer(cid).tags) == 1 + WRITERS
        self.assert_log_has_no_gaps(store)

    @SHARED
    def test_writers_racing_for_one_email(self, store: EventStore, database_url: str) -> None:

        def claim(svc: CommandService, index: int) -> Outcome:
            return svc.execute(
                m.RegisterCustomer(name=f"Racer {index}", email="Prize@Example.com"), self.ctx
            )

        results = self.race(database_url, claim)
        winners: list[Any] = [r for r in results if isinstance(r, Outcome)]
        assert len(winners) == 1, results
        winner: UUID = winners[0].customer_id
        losers = [r for r in results if not isinstance(r, Outcome)]
        assert all(
            isinstance(r, errors.EmailTaken) and r.existing_customer_id == winner for r in losers
        )
        registered = {
            n.originator_id for n in store.notifications(0, 1000) if n.topic.endswith(":Registered")
        }
        assert registered == {winner}
        self.assert_log_has_no_gaps(store)

    @SHARED
    def test_writers_racing_for_one_external_id(self, store: EventStore, database_url: str) -> None:
        """Registration by external id is idempotent under races too: one customer, and every
        racer is answered with it (the losers retried and found it held)."""

        def claim(svc: CommandService, index: int) -> Outcome:
            command = m.RegisterCustomer(name=f"Racer {index}", external_ids={"Shop": "00042"})
            return svc.execute(command, self.ctx)

        results = self.race(database_url, claim)
        assert all(isinstance(r, Outcome) for r in results), results
        outcomes = [r for r in results if isinstance(r, Outcome)]
        assert len({o.customer_id for o in outcomes}) == 1
        assert sorted(o.existing for o in outcomes) == [False] + [True] * (WRITERS - 1)
        registered = [n for n in store.notifications(0, 1000) if n.topic.endswith(":Registered")]
        assert [n.originator_id for n in registered] == [outcomes[0].customer_id]

        def take(svc: CommandService, index: int) -> Outcome:  # racing updates: one holder
            mine = svc.execute(m.RegisterCustomer(name=f"Taker {index}"), self.ctx).customer_id
            changes = {"external_ids": {"crm": "C-1"}}
            return svc.execute(m.UpdateProfile(customer_id=mine, changes=changes), self.ctx)

        results = self.race(database_url, take)
        holders = [r for r in results if isinstance(r, Outcome)]
        assert len(holders) == 1, results
        assert all(isinstance(r, errors.ExternalIdTaken) for r in results if r not in holders)
        self.assert_log_has_no_gaps(store)
