"""One contract for read stores and the projector framework, run on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest

from commands import messages as m
from commands.service import CommandService, Context
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild
from consumers.store_feed import StoreFeed
from infra.envelope import Envelope
from infra.parking import Parked
from infra.read_tx import Tx
from infra.readstore import ReadStore, open_read_store
from infra.sql_arrays import UndeclaredFractions
from infra.store import EventStore
from projections import profile_fold
from projections.framework import (
    Binding,
    bookkeeping,
    ensure_schema,
    lock_positions,
    park,
    positions,
    project,
    versions,
)
from projections.profiles import ProfilesProjector, get_profile, search_profiles

CTX = Context(actor="contract")


class TestReadStore:
    """Runs on every backend; event store and read store share the database."""

    @pytest.fixture
    def read_store(self, database_url: str) -> Iterator[ReadStore]:
        read_store = open_read_store(database_url)
        ensure_schema(read_store, [ProfilesProjector()])
        yield read_store
        read_store.close()

    @pytest.fixture
    def runner(self, store: EventStore, read_store: ReadStore) -> EmbeddedRunner:
        return EmbeddedRunner(StoreFeed(store), read_store, [ProfilesProjector()], batch_size=50)

    def populate(self, service: CommandService, count: int = 30) -> list[UUID]:
        ids = []
        for i in range(count):
            outcome = service.execute(
                m.RegisterCustomer(name=f"Person {i:03d}", email=f"p{i}@example.com"), CTX
            )
            assert outcome.customer_id
            ids.append(outcome.customer_id)
            service.execute(
                m.TagCustomer(customer_id=outcome.customer_id, tag="even" if i % 2 == 0 else "odd"),
                CTX,
            )
            if i % 3 == 0:
                service.execute(
                    m.RecordPurchase(
                        customer_id=outcome.customer_id,
                        order_id=f"o{i}",
                        amount="10.00",
                        currency="EUR",
                    ),
                    CTX,
                )
        return ids

    def folded(self, store: EventStore, customer_id: UUID) -> dict[str, Any]:
        state = profile_fold.empty(customer_id)
        for position, event in store.history(customer_id):
            profile_fold.apply(state, Envelope.from_event(event, position))
        return profile_fold.render(state)

    def test_runner_builds_profiles_equal_to_the_fold(
        self,
        service: CommandService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        ids = self.populate(service)
        assert runner.catch_up() > 0
        with read_store.transaction() as tx:
            for customer_id in ids:
                assert get_profile(tx, customer_id) == self.folded(store, customer_id)
        assert positions(read_store)["profiles"] == max(
            e.position for e in StoreFeed(store).read(0, 10_000)
        )

    def test_redelivery_changes_nothing(
        self,
        service: CommandService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        ids = self.populate(service, 10)
        runner.catch_up()
        envelopes = StoreFeed(store).read(0, 10_000)
        with read_store.transaction() as tx:
            before = tx.fetchall("SELECT * FROM profiles ORDER BY customer_id")
            project(tx, [Binding.live(ProfilesProjector())], envelopes, by_position=False)
            project(tx, [Binding.live(ProfilesProjector())], envelopes[::-1], by_position=False)
            assert tx.fetchall("SELECT * FROM profiles ORDER BY customer_id") == before
        assert len(ids) == 10

    def test_insert_appends_rows_under_mapped_names_and_refuses_a_key_twice(
        self, read_store: ReadStore
    ) -> None:
        rows = [
            (1, "plain", None),
            (2, 'tab\tnew\nline back\\slash "quoted" 数据 \\N', "x"),
            (2**40, "", ""),
        ]
        with read_store.transaction({"appended": "appended_shadow"}) as tx:
            tx.execute(
                "CREATE TABLE {appended} (id BIGINT PRIMARY KEY, body TEXT NOT NULL, note TEXT)"
            )
            tx.insert("appended", ("id", "body", "note"), rows)
            tx.insert("appended", ("id", "body", "note"), [])
        with read_store.transaction() as tx:
            assert tx.fetchall("SELECT id, body, note FROM appended_shadow ORDER BY id") == rows
        with (
            pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)),
            read_store.transaction({"appended": "appended_shadow"}) as tx,
        ):
            tx.insert("appended", ("id", "body", "note"), [(3, "new", None), (1, "again", None)])
        with read_store.transaction() as tx:  # nothing of the refused batch is left
            assert tx.fetchall("SELECT id FROM appended_shadow ORDER BY id") == [
                (1,),
                (2,),
                (2**40,),
            ]

    def test_upsert_and_delete_change_sets_of_rows_under_mapped_names(
        self, read_store: ReadStore
    ) -> None:
        def rows(tx: Tx) -> list[tuple[Any, ...]]:
            return tx.fetchall("SELECT k, n, body, note FROM kept_shadow ORDER BY k, n")

        odd = 'tab\tnew\nline back\\slash "quoted" 数据 \\N {x}'
        with read_store.transaction({"kept": "kept_shadow"}) as tx:
            tx.execute(
                "CREATE TABLE {kept} (k TEXT NOT NULL, n BIGINT NOT NULL, body TEXT, "
                "note TEXT, PRIMARY KEY (k, n))"
            )
            columns = ("k", "n", "body", "note")
            tx.upsert("kept", ("k", "n"), columns, [("a", 1, odd, None), ("a", 2**40, "", "x")])
            tx.upsert("kept", ("k", "n"), columns, [("a", 1, "new", "y"), ("b", 1, None, None)])
            tx.upsert("kept", ("k", "n"), columns, [("b", 1, "ignored", None)], replace=False)
            tx.upsert("kept", ("k", "n"), columns, [])
            assert rows(tx) == [("a", 1, "new", "y"), ("a", 2**40, "", "x"), ("b", 1, None, None)]
            tx.delete("kept", ("k", "n"), [("a", 2**40), ("b", 2), ("c", 1)])
            tx.delete("kept", ("k",), [])
            assert rows(tx) == [("a", 1, "new", "y"), ("b", 1, None, None)]
            tx.upsert("kept", ("k", "n"), ("k", "n", "note"), [("b", 1, odd)])
            assert rows(tx)[-1] == ("b", 1, None, odd)
        if read_store.dialect == "postgres":  # refused as psycopg refuses it row by row
            with (
                pytest.raises(psycopg.DataError, match="NUL"),
                read_store.transaction({"kept": "kept_shadow"}) as tx,
            ):
                tx.upsert("kept", ("k", "n"), ("k", "n", "note"), [("c", 1, "a\x00b")])

    def test_upsert_keeps_the_last_row_of_a_key_and_types_columns_of_nones(
        self, read_store: ReadStore
    ) -> None:
        """Two rows of one key in a batch: PostgreSQL refused the statement ("ON CONFLICT DO
        UPDATE command cannot affect row a second time") where SQLite kept the last. A column
        whose values were all None was sent as text[]: refused by a bigint, timestamptz or
        jsonb column; whole numbers among fractional ones were refused by psycopg; fractions
        in a column not declared fractional were rounded by a BIGINT (kept REAL by SQLite)."""
        columns = ("k", "i", "t", "j", "d")

        def rows(tx: Tx) -> list[tuple[Any, ...]]:
            return tx.fetchall("SELECT k, i, t, j, d FROM typed ORDER BY k")

        with read_store.transaction() as tx:
            tx.execute(
                "CREATE TABLE typed (k TEXT PRIMARY KEY, i BIGINT, t TIMESTAMP WITH TIME ZONE, "
                "j JSONB, d DOUBLE PRECISION)"
            )
            tx.upsert(
                "typed",
                ("k",),
                columns,
                [("a", 1, None, None, 1), ("a", 2, None, None, 2.5)],
                fractional=("d",),
            )
            tx.upsert("typed", ("k",), columns, [("b", None, None, None, None)])
            assert rows(tx) == [("a", 2, None, None, 2.5), ("b", None, None, None, None)]
            tx.upsert(
                "typed", ("k",), columns, [("a", None, None, None, None), ("c", 7, None, None, 3)]
            )
            first = [("b", 5, None, None, 1.0), ("d", 1, None, None, 1.0), ("d", 2, None, None, 2)]
            tx.upsert("typed", ("k",), columns, first, replace=False, fractional=("d",))
            assert rows(tx) == [
                ("a", None, None, None, None),
                ("b", None, None, None, None),
                ("c", 7, None, None, 3.0),
                ("d", 1, None, None, 1.0),
            ]
            cases: list[tuple[list[int | None], list[tuple[str]]]] = [
                ([], []),
                ([None], []),
                ([7, None], [("c",)]),
            ]
            for values, found in cases:
                condition, params = tx.any_of("i", values)
                assert tx.fetchall(f"SELECT k FROM typed WHERE {condition}", params) == found
            condition, params = tx.any_of("d", [1, 2.5, 3])
            assert tx.fetchall(f"SELECT k FROM typed WHERE {condition} ORDER BY k", params) == [
                ("c",),
                ("d",),
            ]
            tx.delete("typed", ("k", "i"), [("c", None), ("d", None)])  # None equals nothing
            tx.delete("typed", ("k", "i"), [("c", 7), ("d", None)])
            assert [k for k, *_ in rows(tx)] == ["a", "b", "d"]
            # a float into a column not declared fractional: PostgreSQL's BIGINT would round
            # it, SQLite's would keep a REAL; refused on both, nothing written
            for undeclared in ([("e", 2.5, None, None, None)], [("e", 1, None, None, 0.5)]):
                with pytest.raises(UndeclaredFractions, match="not declared fractional"):
                    tx.upsert("typed", ("k",), columns, undeclared)
                with pytest.raises(UndeclaredFractions, match="not declared fractional"):
                    tx.insert("typed", columns, undeclared)
            assert [k for k, *_ in rows(tx)] == ["a", "b", "d"]
            tx.insert("typed", columns, [("e", 1, None, None, 0.5)], fractional=("d",))
            assert rows(tx)[-1] == ("e", 1, None, None, 0.5)

    def test_bookkeeping_reads_each_bindings_versions_and_parked_customers(
        self, read_store: ReadStore
    ) -> None:
        """Two bindings of one projector (live tables and shadow copies), more customers than
        one chunk: each binding gets its own tables' versions and parked customers."""
        projector = ProfilesProjector()
        live = Binding.live(projector)
        shadow = Binding(projector, {t: f"{t}_shadow" for t in projector.all_tables()})
        ids = [f"c{i:04d}" for i in range(1_100)]
        with read_store.transaction(shadow.tables) as tx:
            projector.create(tx)
        for binding, step in ((live, 3), (shadow, 5)):
            with read_store.transaction(binding.tables) as tx:
                applied = [(c, i % 7 + 1) for i, c in enumerate(ids) if i % step == 0]
                tx.upsert(
                    projector.versions_table, ("customer_id",), ("customer_id", "version"), applied
                )
                park(
                    tx,
                    projector,
                    [Parked(c, step, 10 + i, "lost") for i, c in enumerate(ids[step::97])],
                )
        with read_store.transaction() as tx:
            found = bookkeeping(tx, [live, shadow], ["absent", *ids])
            for binding, (seen, held), step in zip((live, shadow), found, (3, 5), strict=True):
                scoped = tx.with_tables(binding.tables)
                assert seen == versions(scoped, projector, ids)
                assert seen == {c: i % 7 + 1 for i, c in enumerate(ids) if i % step == 0}
                assert held == dict.fromkeys(ids[step::97], step)
            assert bookkeeping(tx, [live, shadow], []) == [({}, {}), ({}, {})]
            assert bookkeeping(tx, [], ids) == []
            with pytest.raises(ValueError, match="share a versions table"):
                project(tx, [live, live], [])
            with pytest.raises(ValueError, match="at least one value"):
                tx.values([])

    def test_a_batch_for_no_read_model_changes_nothing(
        self, service: CommandService, store: EventStore, read_store: ReadStore
    ) -> None:
        """``project`` with no bindings (every read model filtered out) leaves every row."""
        customer = service.execute(m.RegisterCustomer(name="Ann"), CTX).customer_id
        assert customer is not None
        envelopes = [Envelope.from_event(e, p) for p, e in store.history(customer)]
        before = positions(read_store)
        with read_store.transaction() as tx:
            project(tx, [], envelopes)
        assert positions(read_store) == before

    def test_search_and_paging(
        self, service: CommandService, read_store: ReadStore, runner: EmbeddedRunner
    ) -> None:
        self.populate(service, 25)
        runner.catch_up()
        with read_store.transaction() as tx:
            seen, cursor = [], None
            while True:
                page, cursor = search_profiles(tx, tag="even", cursor=cursor, limit=5)
                seen += [p["customer_id"] for p in page]
                if cursor is None:
                    break
            assert len(seen) == len(set(seen)) == 13 and seen == sorted(seen)
            hits, _ = search_profiles(tx, q="person 01")
            assert sorted(p["name"] for p in hits) == [f"Person 01{i}" for i in range(10)]
            assert [p["email"] for p in search_profiles(tx, q="P7@EX")[0]] == ["p7@example.com"]

    def test_rebuild_during_writes_equals_live(
        self,
        service: CommandService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        ids = self.populate(service, 40)
        runner.start()
        stop = threading.Event()

        def keep_writing() -> None:
            i = 0
            while not stop.is_set() and i < 2000:
                service.execute(
                    m.RecordContact(
                        customer_id=ids[i % len(ids)], channel="email", direction="inbound"
                    ),
                    CTX,
                )
                runner.wake()
                i += 1

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            result = rebuild(StoreFeed(store), read_store, ProfilesProjector(), batch_size=25)
            assert result.events > 0
        finally:
            stop.set()
            writer.join(60)
            runner.stop()
        runner.catch_up()
        verified = rebuild(StoreFeed(store), read_store, ProfilesProjector(), verify_only=True)
        assert verified.differences == []
        with read_store.transaction() as tx:
            assert (
                lock_positions(tx) == {"profiles": store.head()}
                or positions(read_store)["profiles"] <= store.head()
            )
            leftovers = [t for t in read_store.table_names(tx) if "__rb" in t]
            assert leftovers == []
            for customer_id in ids[:5]:
                assert get_profile(tx, customer_id) == self.folded(store, customer_id)

    def test_verify_reports_a_tampered_read_model(
        self,
        service: CommandService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        self.populate(service, 5)
        runner.catch_up()
        with read_store.transaction() as tx:
            tx.execute(
                "UPDATE profiles SET status = 'churned' WHERE customer_id IN (SELECT customer_id FROM profiles ORDER BY customer_id LIMIT 1)"
            )
        result = rebuild(StoreFeed(store), read_store, ProfilesProjector(), verify_only=True)
        assert result.differences == ["profiles: 1 rows missing or different, 1 unexpected"]
