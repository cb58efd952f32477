"""Segments read model contract, live: which customers enter and exit a segment on which event
(rule crossings, consent, time-relative refreshes, RFM ranks, definition changes, erasure and
merges), membership as of a moment, and refused definitions. Runs on SQLite and on a real
PostgreSQL; rebuilds and migration are in ``test_segment_rebuild``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from commands import messages as m
from commands.segments import SegmentService
from commands.service import CommandService
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild
from consumers.store_feed import StoreFeed
from domain.errors import InvalidInput
from infra.readstore import ReadStore
from infra.store import EventStore
from projections.framework import Binding, project
from projections.segment_queries import changes, changes_at, get_definition, members
from projections.segments import SegmentsProjector
from tests.integration.segments_support import (
    CTX,
    EVERYONE,
    SPENDERS,
    VIP,
    SegmentsContract,
    iso,
)


class TestSegments(SegmentsContract):
    """Runs on every backend; event store and read store share the database."""

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
        assert self.rebuild_differences(store, read_store) == []

    def test_an_erasure_restarts_the_history_of_those_holding_copies(
        self,
        service: CommandService,
        segments: SegmentService,
        store: EventStore,
        read_store: ReadStore,
        runner: EmbeddedRunner,
    ) -> None:
        """A merge copied the duplicate's email onto the survivor, and live decided from it
        (a rebuild after the duplicate's erasure reads that copy as shredded)."""
        segments.define(
            "with-email", "Has email", {"field": "email", "op": "exists", "value": True}, None, CTX
        )
        segments.define("vip", "VIP", VIP, None, CTX)
        survivor = self.register(service, "S")
        duplicate = self.run(service, m.RegisterCustomer(name="D", email="d@example.com"))
        assert duplicate.customer_id is not None
        self.run(service, m.TagCustomer(customer_id=survivor, tag="vip"))
        absorbed = duplicate.customer_id
        self.run(service, m.MergeCustomers(customer_id=survivor, duplicate_id=absorbed))
        runner.catch_up()
        assert self.member_ids(read_store, "with-email") == [str(survivor)]
        self.run(service, m.UnmergeCustomers(customer_id=survivor, duplicate_id=absorbed))
        erase = self.run(service, m.EraseCustomer(customer_id=absorbed))
        runner.catch_up()
        with read_store.transaction() as tx:
            left = [c for c in changes(tx) if c["customer_id"] == str(survivor)]
        assert [(c["segment_id"], c["change"], c["position"]) for c in left] == [
            ("vip", "entered", erase.position),
            ("with-email", "exited", erase.position),
        ]
        assert self.member_ids(read_store, "vip") == [str(survivor)]
        assert self.rebuild_differences(store, read_store) == []
