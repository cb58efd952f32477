"""Segments read model contract, rebuilt: a rebuild (in one process or in workers, alone or
during live writes, with a definition changed mid-way) reproduces the live tables and never
applies a definition before it was recorded; ``migrate`` turns schema-1 definitions kept in the
read store into events; a failing rebuild worker fails the rebuild and leaves no shadow tables.
Runs on SQLite and on a real PostgreSQL unless marked otherwise.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from uuid import uuid4

import orjson
import pytest

from bootstrap import build
from bootstrap.services import worker_connections
from commands import messages as m
from commands.segments import SegmentService
from commands.service import CommandService
from consumers.embedded import EmbeddedRunner
from consumers.migrate import migrate
from consumers.rebuild import rebuild, rebuild_all
from consumers.rebuild_by_customer import CustomerPass, RebuildStopped, _worker
from consumers.store_feed import StoreFeed
from domain.errors import DomainError
from infra.feed_queries import START
from infra.readstore import ReadStore
from infra.settings import Settings
from infra.store import EventStore
from projections.profiles import ProfilesProjector
from projections.segment_queries import changes
from projections.segments import SegmentsProjector
from tests.integration.segments_support import CTX, SPENDERS, VIP, SegmentsContract
from tests.integration.workers import worker_connect

LEGACY_DEFINITIONS = """CREATE TABLE segment_definitions (
    segment_id TEXT PRIMARY KEY, name TEXT NOT NULL, rule TEXT NOT NULL, purpose TEXT,
    version INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"""


class TestSegmentRebuild(SegmentsContract):
    """Runs on every backend; event store and read store share the database."""

    def test_a_definition_never_reaches_back_before_it_was_recorded(
        self,
        service: CommandService,
        segments: SegmentService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        """Issue 13 item 7: a rebuild used to replay history as if today's rule always held."""
        customer = self.register(service)
        self.run(service, m.TagCustomer(customer_id=customer, tag="vip"))
        runner.catch_up()
        before = datetime.now(UTC)
        defined = segments.define("vip", "VIP", VIP, None, CTX)
        untagged = self.run(service, m.UntagCustomer(customer_id=customer, tag="vip"))
        again = self.run(service, m.TagCustomer(customer_id=customer, tag="vip"))
        runner.catch_up()
        live = self.snapshot(read_store)
        expected = [
            (str(customer), "entered", defined.position),
            (str(customer), "exited", untagged.position),
            (str(customer), "entered", again.position),
        ]
        assert self.history(read_store, "vip") == expected
        assert self.member_ids(read_store, "vip", as_of=before) == []
        assert self.rebuild_differences(store, read_store) == []
        rebuild(StoreFeed(store), read_store, SegmentsProjector(), batch_size=2)
        assert self.snapshot(read_store) == live
        assert self.member_ids(read_store, "vip", as_of=before) == []

    def test_rebuild_reproduces_the_live_tables(
        self,
        service: CommandService,
        segments: SegmentService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
        database_url: str,
    ) -> None:
        segments.define("vip", "VIP", VIP, None, CTX)
        segments.define("big-spenders", "Big", SPENDERS, "email_marketing", CTX)
        dormant = {"not": {"field": "contacts.last_at", "op": "after", "value": "-30d"}}
        for i in range(12):
            customer = self.register(service, f"P{i}")
            if i % 2:
                self.run(service, m.TagCustomer(customer_id=customer, tag="vip"))
            if i % 3 == 0:
                self.buy(service, customer, f"o{i}", "600")
                self.run(
                    service,
                    m.SetConsent(customer_id=customer, purpose="email_marketing", granted=True),
                )
            if i % 4 == 0:
                self.run(
                    service,
                    m.RecordContact(customer_id=customer, channel="sms", direction="outbound"),
                )
            if i == 5:
                self.run(service, m.UntagCustomer(customer_id=customer, tag="vip"))
                segments.define("dormant", "Dormant", dormant, None, CTX)
            if i == 8:
                runner.catch_up()
                segments.refresh(datetime.now(UTC) + timedelta(days=40), CTX)
        runner.catch_up()
        before = self.snapshot(read_store)
        assert len(before["segment_changes"]) > 12
        result = rebuild(StoreFeed(store), read_store, SegmentsProjector(), verify_only=True)
        assert result.differences == []
        rebuild(StoreFeed(store), read_store, SegmentsProjector(), batch_size=5)
        assert self.snapshot(read_store) == before
        connect = worker_connect(database_url)  # workers replay only projections by customer
        rebuild_all(
            StoreFeed(store),
            read_store,
            [ProfilesProjector(), SegmentsProjector()],
            batch_size=5,
            workers=3,
            connect=connect,
        )
        assert self.snapshot(read_store) == before

    def test_a_definition_changed_mid_rebuild_is_replayed_in_its_place(
        self,
        service: CommandService,
        segments: SegmentService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        segments.define("vip", "VIP", VIP, None, CTX)
        for i in range(4):
            customer = self.register(service, f"P{i}")
            for command in (m.TagCustomer, m.UntagCustomer, m.TagCustomer):
                self.run(service, command(customer_id=customer, tag="vip"))
        runner.catch_up()
        changed: list[int] = []

        def change_the_rule(_reached: int, _head: int) -> None:
            if not changed:  # after the first batch
                changed.append(segments.define("vip", "Not VIP", {"not": VIP}, None, CTX).position)

        rebuild(
            StoreFeed(store),
            read_store,
            SegmentsProjector(),
            batch_size=3,
            progress=change_the_rule,
        )
        assert changed
        with read_store.transaction() as tx:
            history = changes(tx, "vip")
        assert {c["position"] for c in history if c["change"] == "exited"} >= set(changed)
        expected: dict[str, str] = {}
        for change in history:  # in log order, each member alternates, starting by entering
            previous = expected.get(change["customer_id"], "exited")
            assert change["change"] != previous, change
            expected[change["customer_id"]] = change["change"]
        assert self.member_ids(read_store, "vip") == []
        runner.catch_up()  # the live feed has nothing left to add
        verified = rebuild(StoreFeed(store), read_store, SegmentsProjector(), verify_only=True)
        assert verified.differences == []

    def test_rebuild_during_live_writes_then_verify(
        self,
        service: CommandService,
        segments: SegmentService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        segments.define("vip", "VIP", VIP, None, CTX)
        chatty = {"field": "contacts.count", "op": "gte", "value": 3}
        segments.define("chatty", "Chatty", chatty, None, CTX)
        ids = [self.register(service, f"P{i}") for i in range(8)]
        runner.start()
        underway, redefined = threading.Event(), threading.Event()

        def keep_writing() -> None:
            for i in range(160):
                customer = ids[i % len(ids)]
                tagging = m.TagCustomer if i % 2 == 0 else m.UntagCustomer
                command: m.Command = (
                    m.RecordContact(customer_id=customer, channel="chat", direction="inbound")
                    if i % 3
                    else tagging(customer_id=customer, tag="vip")
                )
                with contextlib.suppress(DomainError):
                    self.run(service, command)
                if i == 80:
                    segments.define("chatty", "Chatty", {**chatty, "value": 4}, None, CTX)
                    redefined.set()
                if i == 40:
                    underway.set()
                runner.wake()

        def after_a_batch(_reached: int, _head: int) -> None:
            redefined.wait(30)  # the redefinition lands between the shadow's start and swap

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:  # the rebuild starts with more than a batch written, the writes still going on
            assert underway.wait(30)
            rebuild(
                StoreFeed(store),
                read_store,
                SegmentsProjector(),
                batch_size=25,
                progress=after_a_batch,
            )
        finally:
            writer.join(60)
            runner.stop()
        assert redefined.is_set() and not writer.is_alive()
        runner.catch_up()  # the rest, after the runner's thread stopped
        verified = rebuild(StoreFeed(store), read_store, SegmentsProjector(), verify_only=True)
        assert verified.differences == []
        assert len(self.member_ids(read_store, "chatty")) == len(ids)

    def test_definitions_kept_only_in_the_read_store_become_events_on_migrate(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """Schema 1 kept definitions beside the read models; migrate records them once, a
        ``campaign-<uuid>`` id too (schema 1 reserved no namespace: before the fix the upgrade
        failed with ReservedSegmentId)."""
        settings = Settings(
            database_url=database_url,
            read_database_url=database_url,
            api_keys_file=tmp_path / "keys.json",
        )
        services = build(settings)
        try:
            migrate(services)
            tagged = services.commands.execute(m.RegisterCustomer(name="Vi"), CTX).customer_id
            assert tagged is not None
            legacy = f"campaign-{uuid4()}"  # recorded first: migrate goes by segment_id
            services.commands.execute(m.TagCustomer(customer_id=tagged, tag="vip"), CTX)
            with services.read_store.transaction() as tx:  # back to schema 1's shape
                for table in ("segment_definitions", "segment_rfm"):
                    tx.raw(f"DROP TABLE {table}")
                tx.raw(LEGACY_DEFINITIONS)
                tx.raw(
                    "INSERT INTO segment_definitions VALUES (?, ?, ?, NULL, 3, ?, ?)",
                    ("vip", "VIP", orjson.dumps(VIP).decode(), "2024-01-01", "2024-02-01"),
                )
                tx.raw(
                    "INSERT INTO segment_definitions VALUES (?, ?, ?, NULL, 3, ?, ?)",
                    (legacy, "Old", orjson.dumps(VIP).decode(), "2024-01-01", "2024-02-01"),
                )
                tx.raw("CREATE TABLE segment_applied (segment_id TEXT PRIMARY KEY, version INT)")
                tx.execute(
                    "UPDATE projection_state SET schema_version = 1 WHERE name = ?", ["segments"]
                )
            assert migrate(services) == ["segments"]
            old, defined = [e for e in services.feed.read(0, 100) if e.type == "segment.defined"]
            assert (old.data["segment_id"], defined.data["segment_id"]) == (legacy, "vip")
            assert self.member_ids(services.read_store, legacy) == [str(tagged)]
            assert defined.data["rule"] == {**VIP, "value": "vip"}
            assert defined.actor == "clientele:migrate"
            assert self.member_ids(services.read_store, "vip") == [str(tagged)]
            assert self.history(services.read_store, "vip") == [
                (str(tagged), "entered", defined.position)
            ]
            with services.read_store.transaction() as tx:
                assert "segment_applied" not in services.read_store.table_names(tx)
            head = services.store.head()
            assert migrate(services) == [] and services.store.head() == head
        finally:
            services.close()

    @pytest.mark.backends("postgres")  # parallel rebuild workers are a PostgreSQL tool
    def test_a_failing_worker_fails_the_rebuild_and_leaves_no_shadow(
        self,
        service: CommandService,
        store: EventStore,
        read_store: ReadStore,
        database_url: str,
    ) -> None:
        for i in range(6):
            self.run(service, m.TagCustomer(customer_id=self.register(service, f"P{i}"), tag="vip"))
        misconfigured = partial(
            worker_connections, Settings(database_url=database_url, read_database_url="mysql://x/y")
        )
        with pytest.raises(ValueError, match="unsupported read store URL scheme"):
            rebuild_all(  # profiles replay by customer, in the workers
                StoreFeed(store),
                read_store,
                [ProfilesProjector(), SegmentsProjector()],
                batch_size=3,
                workers=2,
                connect=misconfigured,
            )
        with read_store.transaction() as tx:
            left = tx.fetchall("SELECT name FROM projection_state WHERE name LIKE ?", ("%\\_rb%",))
            assert left == [] and not [t for t in read_store.table_names(tx) if "__rb" in t]

    def test_a_worker_stops_before_its_range_once_another_failed(self) -> None:
        stop = threading.Event()
        stop.set()
        work = CustomerPass([], {}, head=10, batch_size=5)
        never = worker_connect("postgresql://nobody@127.0.0.1:1/none")  # not even tried
        with pytest.raises(RebuildStopped):
            _worker(never, work, START, None, stop)
