"""Segments read model contract, run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest

from bootstrap import build
from bootstrap.services import worker_connections
from commands import messages as m
from commands.segments import SegmentService
from commands.service import CommandService, Context, Outcome
from consumers.embedded import EmbeddedRunner
from consumers.migrate import migrate
from consumers.rebuild import rebuild, rebuild_all
from consumers.rebuild_by_customer import CustomerPass, RebuildStopped, _worker
from consumers.store_feed import StoreFeed
from domain.errors import DomainError, InvalidInput
from infra.feed_queries import START
from infra.readstore import ReadStore, open_read_store
from infra.settings import Settings
from infra.store import EventStore
from projections.framework import Binding, ensure_schema, project
from projections.profiles import ProfilesProjector
from projections.segments import SegmentsProjector, changes, changes_at, get_definition, members
from tests.integration.workers import worker_connect

CTX = Context(actor="segments-contract")
LEGACY_DEFINITIONS = """CREATE TABLE segment_definitions (
    segment_id TEXT PRIMARY KEY, name TEXT NOT NULL, rule TEXT NOT NULL, purpose TEXT,
    version INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"""
TABLES = SegmentsProjector.tables
SPENDERS = {"field": "purchases.total.EUR", "op": "gte", "value": "500"}
VIP = {"field": "tags", "op": "contains", "value": "VIP"}
EVERYONE = {"field": "purchases.count", "op": "gte", "value": 0}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class TestSegments:
    """Runs on every backend; event store and read store share the database."""

    @pytest.fixture
    def read_store(self, database_url: str) -> Iterator[ReadStore]:
        read_store = open_read_store(database_url)
        ensure_schema(read_store, [ProfilesProjector(), SegmentsProjector()])
        yield read_store
        read_store.close()

    @pytest.fixture
    def segments(self, store: EventStore) -> SegmentService:
        return SegmentService(store)

    @pytest.fixture
    def runner(self, store: EventStore, read_store: ReadStore) -> EmbeddedRunner:
        projectors = [ProfilesProjector(), SegmentsProjector()]
        return EmbeddedRunner(StoreFeed(store), read_store, projectors, batch_size=7)

    # ----------------------------------------------------------------------- helpers

    def run(self, service: CommandService, command: m.Command) -> Outcome:
        return service.execute(command, CTX)

    def register(self, service: CommandService, name: str = "Ada") -> UUID:
        since = datetime.now(UTC) - timedelta(days=365)  # purchases may be back-dated
        customer = self.run(service, m.RegisterCustomer(name=name, occurred_at=since)).customer_id
        assert customer is not None
        return customer

    def buy(self, service: CommandService, customer: UUID, order: str, amount: str) -> Outcome:
        purchase = m.RecordPurchase(
            customer_id=customer, order_id=order, amount=amount, currency="EUR"
        )
        return self.run(service, purchase)

    def history(self, read_store: ReadStore, segment: str) -> list[tuple[str, str, int]]:
        with read_store.transaction() as tx:
            rows = changes(tx, segment)
        return [(r["customer_id"], r["change"], r["position"]) for r in rows]

    def member_ids(
        self, read_store: ReadStore, segment: str, as_of: datetime | None = None
    ) -> list[str]:
        seen: list[str] = []
        cursor = None
        with read_store.transaction() as tx:
            while True:
                page, cursor = members(tx, segment, cursor=cursor, limit=3, as_of=as_of)
                seen += [item["customer_id"] for item in page]
                if cursor is None:
                    return seen

    def snapshot(self, read_store: ReadStore) -> dict[str, list[tuple[Any, ...]]]:
        with read_store.transaction() as tx:
            return {t: sorted(tx.fetchall(f"SELECT * FROM {t}"), key=repr) for t in TABLES}

    # ----------------------------------------------------------------------- tests

    def test_changes_are_recorded_on_the_event_that_crossed_the_rule(
        self,
        service: CommandService,
        segments: SegmentService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        segments.define("big-spenders", "Big spenders", SPENDERS, None, CTX)
        segments.define("vip", "VIP", VIP, None, CTX)
        customer = self.register(service)
        self.buy(service, customer, "o1", "300.00")
        crossing = self.buy(service, customer, "o2", "250.00")
        tagged = self.run(service, m.TagCustomer(customer_id=customer, tag="vip"))
        untagged = self.run(service, m.UntagCustomer(customer_id=customer, tag="vip"))
        runner.catch_up()
        key = str(customer)
        assert self.history(read_store, "big-spenders") == [(key, "entered", crossing.position)]
        assert self.history(read_store, "vip") == [
            (key, "entered", tagged.position),
            (key, "exited", untagged.position),
        ]
        (envelope,) = [e for e in StoreFeed(store).read(0, 100) if e.position == crossing.position]
        with read_store.transaction() as tx:
            page, cursor = members(tx, "big-spenders")
            assert changes(tx, "big-spenders")[0]["at"] == iso(envelope.recorded_at)
        assert cursor is None
        assert page == [
            {"customer_id": key, "since": iso(envelope.recorded_at), "position": crossing.position}
        ]
        assert self.member_ids(read_store, "vip") == []

    def test_redelivered_events_change_nothing(
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
            self.run(service, m.TagCustomer(customer_id=customer, tag="vip"))
        runner.catch_up()
        before = self.snapshot(read_store)
        envelopes = StoreFeed(store).read(0, 1000)
        with read_store.transaction() as tx:
            binding = Binding.live(SegmentsProjector())
            project(tx, [binding], envelopes, by_position=False)
            project(tx, [binding], envelopes[::-1], by_position=False)
        assert self.snapshot(read_store) == before
        assert len(before["segment_members"]) == 4

    def test_marketing_segments_honour_consent(
        self,
        service: CommandService,
        segments: SegmentService,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        active = {"field": "status", "op": "eq", "value": "active"}
        segments.define("newsletter", "Newsletter", active, "email_marketing", CTX)
        segments.define("all-active", "All active", active, None, CTX)
        customer = self.register(service)
        consent = m.SetConsent(customer_id=customer, purpose="email_marketing", granted=True)
        granted = self.run(service, consent)
        withdrawn = self.run(
            service, m.SetConsent(customer_id=customer, purpose="email_marketing", granted=False)
        )
        runner.catch_up()
        key = str(customer)
        assert self.history(read_store, "newsletter") == [
            (key, "entered", granted.position),
            (key, "exited", withdrawn.position),
        ]
        assert self.member_ids(read_store, "all-active") == [key]

    def test_time_relative_rules_change_on_a_recorded_refresh(
        self,
        service: CommandService,
        segments: SegmentService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        recent = {"field": "purchases.count", "op": "gte", "value": 1, "within": "30d"}
        dormant = {"not": {"field": "contacts.last_at", "op": "after", "value": "-30d"}}
        segments.define("recent-buyers", "Recent buyers", recent, None, CTX)
        segments.define("dormant", "No contact for 30 days", dormant, None, CTX)
        buyer, old_buyer = self.register(service, "Buyer"), self.register(service, "Old")
        self.buy(service, buyer, "o1", "10")
        contacted = self.run(
            service, m.RecordContact(customer_id=buyer, channel="email", direction="inbound")
        )
        old = datetime.now(UTC) - timedelta(days=40)
        self.run(
            service,
            m.RecordPurchase(
                customer_id=old_buyer, order_id="o2", amount="10", currency="EUR", occurred_at=old
            ),
        )
        runner.catch_up()
        assert self.member_ids(read_store, "recent-buyers") == [str(buyer)]
        assert self.member_ids(read_store, "dormant") == [str(old_buyer)]
        assert self.history(read_store, "dormant")[-1] == (str(buyer), "exited", contacted.position)
        later = datetime.now(UTC) + timedelta(days=31)
        refreshed = segments.refresh(later, CTX)
        assert segments.refresh(later, CTX) == refreshed  # the same instant is recorded once
        runner.catch_up()
        with read_store.transaction() as tx:
            assert changes_at(tx, refreshed) == 2
            latest = changes(tx)[-2:]
        assert self.member_ids(read_store, "recent-buyers") == []
        assert sorted(self.member_ids(read_store, "dormant")) == sorted(
            [str(buyer), str(old_buyer)]
        )
        assert {(c["change"], c["at"], c["position"]) for c in latest} == {
            ("exited", iso(later), refreshed),
            ("entered", iso(later), refreshed),
        }
        (event,) = [e for e in StoreFeed(store).read(0, 100) if e.position == refreshed]
        assert event.type == "segments.refreshed" and event.occurred_at == later

    def test_rfm_segments_are_ranked_at_refreshes_and_hold_between_them(
        self,
        service: CommandService,
        segments: SegmentService,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        champions = {"field": "rfm.group", "op": "eq", "value": "champions"}
        segments.define("champions", "Champions", champions, None, CTX)
        today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        people = [self.register(service, f"P{i}") for i in range(5)]
        for rank, customer in enumerate(people):  # P4 buys most often and most recently
            for day in range(rank + 1):
                when = today - timedelta(days=30 - day - 5 * rank)
                purchase = m.RecordPurchase(
                    customer_id=customer,
                    order_id=f"o{rank}-{day}",
                    amount="10",
                    currency="EUR",
                    occurred_at=when,
                )
                self.run(service, purchase)
        runner.catch_up()
        assert self.member_ids(read_store, "champions") == []  # no ranks before a refresh
        first = segments.refresh(today, CTX)
        runner.catch_up()
        top = {str(people[3]), str(people[4])}  # R4-5 and F4-5 of five
        assert set(self.member_ids(read_store, "champions")) == top
        self.run(service, m.TagCustomer(customer_id=people[4], tag="gold"))
        for day in range(6):  # P0 now buys more than anyone, but ranks only move at refreshes
            late = datetime.now(UTC) - timedelta(days=day)
            purchase = m.RecordPurchase(
                customer_id=people[0],
                order_id=f"late-{day}",
                amount="10",
                currency="EUR",
                occurred_at=late,
            )
            self.run(service, purchase)
        runner.catch_up()
        assert set(self.member_ids(read_store, "champions")) == top
        second = segments.refresh(today + timedelta(days=2), CTX)
        runner.catch_up()
        assert set(self.member_ids(read_store, "champions")) == {str(people[0]), str(people[4])}
        assert sorted(self.history(read_store, "champions"), key=lambda h: (h[2], h[1])) == [
            *sorted((c, "entered", first) for c in top),
            (str(people[0]), "entered", second),
            (str(people[3]), "exited", second),
        ]

    def test_definitions_are_events_and_decide_every_customer_when_recorded(
        self,
        service: CommandService,
        segments: SegmentService,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        spent = {}
        for amount in ("50", "150", "250"):
            customer = self.register(service, f"Spent {amount}")
            self.buy(service, customer, f"o{amount}", amount)
            spent[amount] = str(customer)
        runner.catch_up()
        rule = {"field": "purchases.total.eur", "op": "gte", "value": 100}
        created = segments.define("spenders", "Spenders", rule, None, CTX)
        assert created.version == 1 and created.rule["field"] == "purchases.total.EUR"
        runner.catch_up()
        assert sorted(self.member_ids(read_store, "spenders")) == sorted(
            [spent["150"], spent["250"]]
        )
        stricter = {**rule, "value": "200"}
        changed = segments.define("spenders", "Spenders", stricter, None, CTX)
        assert changed.version == 2 and changed.position > created.position
        assert segments.define("spenders", "Spenders", stricter, None, CTX) == changed  # no-op
        runner.catch_up()
        assert self.member_ids(read_store, "spenders") == [spent["250"]]
        assert sorted(self.history(read_store, "spenders")) == sorted(
            [
                (spent["150"], "entered", created.position),
                (spent["250"], "entered", created.position),
                (spent["150"], "exited", changed.position),
            ]
        )
        with read_store.transaction() as tx:
            assert get_definition(tx, "spenders") == {
                k: v for k, v in changed.view().items() if k != "position"
            }
        rebuild(StoreFeed(service.store), read_store, SegmentsProjector())
        with read_store.transaction() as tx:
            assert get_definition(tx, "spenders") == {
                k: v for k, v in changed.view().items() if k != "position"
            }
        assert self.member_ids(read_store, "spenders") == [spent["250"]]

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
        assert (
            rebuild(StoreFeed(store), read_store, SegmentsProjector(), verify_only=True).differences
            == []
        )
        rebuild(StoreFeed(store), read_store, SegmentsProjector(), batch_size=2)
        assert self.snapshot(read_store) == live
        assert self.member_ids(read_store, "vip", as_of=before) == []

    def test_invalid_definitions_are_refused_with_the_field_path(
        self, segments: SegmentService, store: EventStore
    ) -> None:
        bad = {"all": [VIP, {"field": "tags", "op": "gte", "value": "x"}]}
        with pytest.raises(InvalidInput) as caught:
            segments.define("bad", "Bad", bad, None, CTX)
        assert caught.value.field == "rule.all[1].op"
        with pytest.raises(InvalidInput, match="segment_id"):
            segments.define("Not An Id", "Bad", VIP, None, CTX)
        with pytest.raises(InvalidInput, match="purpose"):
            segments.define("ok", "Ok", VIP, "carrier_pigeon", CTX)
        with pytest.raises(InvalidInput, match="name"):
            segments.define("ok", "  ", VIP, None, CTX)
        assert store.head() == 0  # nothing recorded

    def test_membership_as_of_is_answered_from_history(
        self,
        service: CommandService,
        segments: SegmentService,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        segments.define("vip", "VIP", VIP, None, CTX)
        customer = self.register(service)
        for command in (m.TagCustomer, m.UntagCustomer, m.TagCustomer):
            self.run(service, command(customer_id=customer, tag="vip"))
        runner.catch_up()
        with read_store.transaction() as tx:
            entered, exited, again = (datetime.fromisoformat(c["at"]) for c in changes(tx, "vip"))
        key = [str(customer)]
        assert self.member_ids(read_store, "vip", as_of=entered - timedelta(microseconds=1)) == []
        assert self.member_ids(read_store, "vip", as_of=entered) == key
        assert self.member_ids(read_store, "vip", as_of=exited) == []
        assert self.member_ids(read_store, "vip", as_of=again) == key
        assert self.member_ids(read_store, "vip", as_of=datetime.now(UTC)) == key

    def test_erased_and_merged_customers_exit_every_segment(
        self,
        service: CommandService,
        segments: SegmentService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        segments.define("everyone", "Everyone", EVERYONE, None, CTX)
        erased, survivor, duplicate = (self.register(service, n) for n in ("E", "S", "D"))
        erase = self.run(service, m.EraseCustomer(customer_id=erased))
        self.run(service, m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate))
        runner.catch_up()
        merged = [e for e in StoreFeed(store).read(0, 100) if e.type == "customer.merged_into"]
        assert self.member_ids(read_store, "everyone") == [str(survivor)]
        assert [h for h in self.history(read_store, "everyone") if h[1] == "exited"] == [
            (str(erased), "exited", erase.position),
            (str(duplicate), "exited", merged[0].position),
        ]
        self.run(service, m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate))
        runner.catch_up()
        assert sorted(self.member_ids(read_store, "everyone")) == sorted(
            [str(survivor), str(duplicate)]
        )

    def test_an_erasure_leaves_no_history_decided_from_personal_data(
        self,
        service: CommandService,
        segments: SegmentService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        """Live, a rule on the email saw it; a rebuild after the erasure never can."""
        segments.define(
            "with-email", "Has email", {"field": "email", "op": "exists", "value": True}, None, CTX
        )
        segments.define("vip", "VIP", VIP, None, CTX)
        customer = self.run(
            service, m.RegisterCustomer(name="Eve", email="eve@example.com")
        ).customer_id
        assert customer is not None
        self.run(service, m.TagCustomer(customer_id=customer, tag="vip"))
        runner.catch_up()
        assert self.member_ids(read_store, "with-email") == [str(customer)]
        erase = self.run(service, m.EraseCustomer(customer_id=customer))
        runner.catch_up()
        with read_store.transaction() as tx:
            left = [c for c in changes(tx) if c["customer_id"] == str(customer)]
        assert [(c["segment_id"], c["change"], c["position"]) for c in left] == [
            ("vip", "exited", erase.position),
            ("with-email", "exited", erase.position),
        ]
        assert (
            rebuild(StoreFeed(store), read_store, SegmentsProjector(), verify_only=True).differences
            == []
        )

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
                runner.wake()

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            rebuild(StoreFeed(store), read_store, SegmentsProjector(), batch_size=25)
        finally:
            writer.join(60)
            runner.stop()
        runner.catch_up()
        verified = rebuild(StoreFeed(store), read_store, SegmentsProjector(), verify_only=True)
        assert verified.differences == []
        assert len(self.member_ids(read_store, "chatty")) == len(ids)

    def test_definitions_kept_only_in_the_read_store_become_events_on_migrate(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """Schema 1 kept definitions beside the read models; migrate records them once."""
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
            services.commands.execute(m.TagCustomer(customer_id=tagged, tag="vip"), CTX)
            with services.read_store.transaction() as tx:  # back to schema 1's shape
                for table in ("segment_definitions", "segment_rfm"):
                    tx.raw(f"DROP TABLE {table}")
                tx.raw(LEGACY_DEFINITIONS)
                tx.raw(
                    "INSERT INTO segment_definitions VALUES (?, ?, ?, NULL, 3, ?, ?)",
                    ("vip", "VIP", orjson.dumps(VIP).decode(), "2024-01-01", "2024-02-01"),
                )
                tx.raw("CREATE TABLE segment_applied (segment_id TEXT PRIMARY KEY, version INT)")
                tx.execute(
                    "UPDATE projection_state SET schema_version = 1 WHERE name = ?", ["segments"]
                )
            assert migrate(services) == ["segments"]
            (defined,) = [e for e in services.feed.read(0, 100) if e.type == "segment.defined"]
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
