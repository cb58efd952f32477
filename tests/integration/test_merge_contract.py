"""Merges and every read model, on SQLite and on a real PostgreSQL (issue 13, items 4, 5, 2).

* consent: after a merge the survivor is out of every purpose-gated audience the duplicate
  withdrew from (each purpose), the audit shows why, and unmerge leaves consents alone;
* erasure reaches every copy: erasing the end of a merge chain shreds every member's key in the
  same transaction, and no profile, history row, segment state, time travel or export shows
  their personal data any more;
* merge parts fold in profiles, audit, analytics and segments to what the merge moved, and an
  unmerge in parts gives back exactly that; rebuilds equal the live tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import orjson
import pytest

from commands import messages as m
from commands.segments import SegmentService
from commands.service import CommandService, Context
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild
from consumers.store_feed import StoreFeed
from domain import errors
from domain.merging import MERGE_SOURCE_PREFIX
from domain.values import ConsentPurpose
from infra.envelope import Envelope
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from infra.tamper_evidence.export import export_lines
from projections import audit_history, profile_fold
from projections.analytics import AnalyticsProjector
from projections.framework import Binding, Projector, ensure_schema, project
from projections.profiles import ProfilesProjector, get_profile
from projections.segment_queries import members
from projections.segments import SegmentsProjector

CTX = Context(actor="merge-contract")
NEWSLETTER = {"field": "tags", "op": "contains", "value": "newsletter"}
BIG_SPENDERS = {"field": "purchases.count", "op": "gte", "value": 10}
MOVING = ("version", "position", "updated_at")


def projectors() -> list[Projector]:
    return [
        ProfilesProjector(),
        SegmentsProjector(),
        audit_history.AuditHistoryProjector(),
        AnalyticsProjector(),
    ]


class TestMerges:
    @pytest.fixture
    def world(
        self, database_url: str
    ) -> Iterator[tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]]:
        store = EventStore(database_url, snapshot_interval=4)
        read_store = open_read_store(database_url)
        ensure_schema(read_store, projectors())
        runner = EmbeddedRunner(StoreFeed(store), read_store, projectors(), batch_size=5)
        yield store, read_store, CommandService(store, default_region="DE", index_key="k"), runner
        read_store.close()
        store.close()

    def register(self, service: CommandService, **fields: Any) -> UUID:
        customer = service.execute(m.RegisterCustomer(**fields), CTX).customer_id
        assert customer is not None
        return customer

    def members(self, read_store: ReadStore, segment: str) -> set[str]:
        with read_store.transaction() as tx:
            return {item["customer_id"] for item in members(tx, segment, limit=500)[0]}

    def profile(self, read_store: ReadStore, customer: UUID) -> dict[str, Any]:
        with read_store.transaction() as tx:
            found = get_profile(tx, customer)
        assert found is not None
        return found

    def assert_rebuilds_equal_live(self, store: EventStore, read_store: ReadStore) -> None:
        for projector in projectors():
            result = rebuild(StoreFeed(store), read_store, projector, verify_only=True)
            assert result.differences == [], projector.name

    # ------------------------------------------------------------------------ consent

    def test_a_merge_takes_the_survivor_out_of_every_audience_the_duplicate_left(
        self, world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]
    ) -> None:
        store, read_store, service, runner = world
        pairs: dict[str, tuple[UUID, UUID]] = {}
        for purpose in ConsentPurpose:
            SegmentService(store).define(
                purpose.value, purpose.value, NEWSLETTER, purpose.value, CTX
            )
            survivor = self.register(service, name=f"S {purpose}")
            duplicate = self.register(service, name=f"D {purpose}", email=f"{purpose}@example.com")
            service.execute_batch(
                [
                    m.SetConsent(customer_id=survivor, purpose=purpose, granted=True),
                    m.SetConsent(customer_id=duplicate, purpose=purpose, granted=True),
                    m.SetConsent(
                        customer_id=duplicate,
                        purpose=purpose,
                        granted=False,
                        source="unsubscribe-link",
                    ),
                    m.TagCustomer(customer_id=survivor, tag="newsletter"),
                ],
                CTX,
            )
            pairs[purpose] = (survivor, duplicate)
        runner.catch_up()
        for name, (survivor, _) in pairs.items():
            assert self.members(read_store, name) == {str(survivor)}

        for survivor, duplicate in pairs.values():
            merge = m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate)
            service.execute(merge, Context(actor="admin"))  # a correlation id of its own
        runner.catch_up()
        for name, (survivor, duplicate) in pairs.items():
            purpose = ConsentPurpose(name)
            assert self.members(read_store, purpose) == set(), purpose
            shown = self.profile(read_store, survivor)
            assert shown["email"] == f"{purpose}@example.com"
            assert shown["consents"][purpose] is False
            with read_store.transaction() as tx:
                rows, _ = audit_history.history(tx, survivor)
                decisions, _ = audit_history.consent_history(tx, survivor)
            merge_rows = [
                r["type"] for r in rows if r["correlation_id"] == rows[-1]["correlation_id"]
            ]
            assert merge_rows == ["customer.consent_withdrawn", "customer.duplicate_absorbed"]
            assert (decisions[-1]["granted"], decisions[-1]["source"]) == (
                False,
                f"{MERGE_SOURCE_PREFIX}{duplicate}",
            )

        survivor, duplicate = pairs[ConsentPurpose.EMAIL_MARKETING]
        service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
        runner.catch_up()
        assert self.profile(read_store, survivor)["consents"]["email_marketing"] is False
        assert self.profile(read_store, duplicate)["consents"]["email_marketing"] is False
        assert self.members(read_store, "email_marketing") == set()
        service.execute(
            m.SetConsent(customer_id=survivor, purpose="email_marketing", granted=True), CTX
        )
        runner.catch_up()
        assert self.members(read_store, "email_marketing") == {str(survivor)}
        self.assert_rebuilds_equal_live(store, read_store)

    # ------------------------------------------------------------------------ erasure

    def test_erasing_the_end_of_a_merge_chain_leaves_no_readable_copy(
        self,
        world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner],
        database_url: str,
    ) -> None:
        store, read_store, service, runner = world
        everyone = {"field": "purchases.count", "op": "gte", "value": 0}
        SegmentService(store).define("everyone", "Everyone", everyone, None, CTX)
        a = self.register(
            service, name="Ann Alpha", email="ann.alpha@example.com", phone="+4930901820"
        )
        b = self.register(service, name="Ann Beta", attributes={"city": "Oslo"})
        c = self.register(service, name="Ann Gamma", email="ann.gamma@example.com")
        service.execute(
            m.RecordContact(
                customer_id=a, channel="phone", direction="inbound", summary="Ann's secret"
            ),
            CTX,
        )
        service.execute(m.MergeCustomers(customer_id=b, duplicate_id=a), CTX)
        service.execute(m.MergeCustomers(customer_id=c, duplicate_id=b), CTX)
        with pytest.raises(errors.CustomerMerged) as refused:
            service.execute(m.EraseCustomer(customer_id=a), CTX)
        assert refused.value.survivor_id == c
        runner.catch_up()
        assert self.profile(read_store, c)["phone"] == "+4930901820"

        service.execute(m.EraseCustomer(customer_id=c, reason="request"), CTX)
        runner.catch_up()

        secrets = (
            "Ann Alpha",
            "Ann Beta",
            "Ann Gamma",
            "ann.alpha",
            "ann.gamma",
            "+4930901820",
            "Oslo",
            "secret",
        )
        with read_store.transaction() as tx:
            keys: dict[str, Any] = dict(
                tx.fetchall("SELECT customer_id, wrapped FROM customer_keys")
            )
            dumped = repr(
                [
                    tx.fetchall(f"SELECT * FROM {table}")
                    for table in ("profiles", "audit_events", "audit_state", "segment_state")
                ]
            )
        assert [keys[x.hex] for x in (a, b, c)] == [None] * 3
        assert not [s for s in secrets if s in dumped]
        for customer in (a, b, c):
            assert self.profile(read_store, customer)["status"] == "erased"
        assert self.members(read_store, "everyone") == set()

        other = EventStore(database_url)  # another process: nothing cached
        try:
            travelled = []
            for customer in (a, b, c):
                state = profile_fold.empty(customer)
                for position, event in other.history(customer):  # what time travel folds
                    profile_fold.apply(state, Envelope.from_event(event, position))
                    travelled.append(orjson.dumps(profile_fold.render(state)))
            opened = [(e.data, e.sealed) for e in StoreFeed(other).read(0, 1000)]
            exported = b"".join(export_lines(other, read_store))
        finally:
            other.close()
        shown = repr(travelled) + repr(opened) + exported.decode()
        assert not [s for s in secrets if s in shown]
        self.assert_rebuilds_equal_live(store, read_store)

    def test_erasing_a_duplicate_after_an_unmerge_reaches_every_copy_on_the_survivor(
        self,
        world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner],
        database_url: str,
    ) -> None:
        store, read_store, service, runner = world
        survivor = self.register(service, name="Sam")
        duplicate = self.register(service, name="Dee", email="dee@example.com", phone="+4930901820")
        service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
        for n in range(5):  # snapshots (every 4 events) while the survivor holds the copies
            service.execute(m.TagCustomer(customer_id=survivor, tag=f"t{n}"), CTX)
        service.execute(
            m.UpdateProfile(customer_id=survivor, changes={"phone": "+4930901821"}), CTX
        )  # a diff whose "before" is the duplicate's phone
        service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
        runner.catch_up()
        assert store.snapshots is not None and list(store.snapshots.get(survivor))

        service.execute(m.EraseCustomer(customer_id=duplicate), CTX)
        runner.catch_up()

        assert list(store.snapshots.get(survivor)) == []  # dropped with the key, atomically
        with read_store.transaction() as tx:
            live, _ = audit_history.history(tx, survivor)
        assert "dee@example.com" not in repr(live) and "+4930901820" not in repr(live)
        phones = [r["diff"]["phone"] for r in live if "phone" in r["diff"]]
        assert phones == [[None, "+4930901821"]]  # what folding the redacted copies gives
        shown = self.profile(read_store, survivor)
        assert (shown["status"], shown["phone"], shown["email"]) == ("active", "+4930901821", None)
        other = EventStore(database_url)  # another process: nothing cached
        try:
            text = repr([(e.data, e.sealed) for e in StoreFeed(other).read(0, 1000)])
            text += repr([vars(other.customer(survivor, version=v)) for v in range(1, 10)])
        finally:
            other.close()
        assert "dee@example.com" not in text and "+4930901820" not in text
        rebuild(
            StoreFeed(store), read_store, audit_history.AuditHistoryProjector()
        )  # swaps the replay in
        with read_store.transaction() as tx:
            rebuilt, _ = audit_history.history(tx, survivor)
        assert rebuilt == live

    def test_a_consumer_that_sees_the_erasure_before_the_unmerge_agrees_with_a_rebuild(
        self, world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]
    ) -> None:
        """Kafka delivers each customer's events in order, not across customers: the merge
        was folded with the phone readable, the duplicate's erasure arrives before the
        survivor's unmerge (which opens after the key is gone)."""
        store, read_store, service, _ = world
        survivor = self.register(service, name="Sam", email="sam@example.com")
        duplicate = self.register(service, name="Dee", phone="+4930901820")
        service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
        early = StoreFeed(store).read(0, 1000)  # opened while the duplicate's key exists
        service.execute(m.TagCustomer(customer_id=survivor, tag="vip"), CTX)
        service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
        service.execute(m.EraseCustomer(customer_id=duplicate), CTX)
        late = StoreFeed(store).read(early[-1].position, 1000)
        first = [e for e in late if e.customer_id == duplicate]  # its unmerge and erasure
        then = [e for e in late if e.customer_id == survivor]
        bindings = [Binding.live(p) for p in projectors()]
        for batch in (early, first, then):
            with read_store.transaction() as tx:
                project(tx, bindings, batch, by_position=False)
        with read_store.transaction() as tx:
            live, _ = audit_history.history(tx, survivor)
            live_state = tx.fetchone(
                "SELECT state FROM audit_state WHERE customer_id = ?", (str(survivor),)
            )
        assert "+4930901820" not in repr([live, live_state])
        assert self.profile(read_store, survivor)["phone"] is None
        rebuild(StoreFeed(store), read_store, audit_history.AuditHistoryProjector())
        with read_store.transaction() as tx:
            rebuilt, _ = audit_history.history(tx, survivor)
            rebuilt_state = tx.fetchone(
                "SELECT state FROM audit_state WHERE customer_id = ?", (str(survivor),)
            )
        assert (rebuilt, rebuilt_state) == (live, live_state)
        for projector in (ProfilesProjector(), SegmentsProjector()):
            result = rebuild(StoreFeed(store), read_store, projector, verify_only=True)
            assert result.differences == [], projector.name

    # -------------------------------------------------------------------------- parts

    def test_merge_parts_fold_in_every_read_model_and_unmerge_gives_all_back(
        self, world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]
    ) -> None:
        store, read_store, _, runner = world
        service = CommandService(store, default_region="DE", index_key="k", merge_part_size=7)
        SegmentService(store).define("big", "Big spenders", BIG_SPENDERS, None, CTX)
        survivor = self.register(service, name="Sam")
        duplicate = self.register(service, name="Dee", email="dee@example.com")
        service.execute_batch(
            [
                m.RecordPurchase(
                    customer_id=customer,
                    order_id=f"{customer}-{i}",
                    amount=f"{i}.50",
                    currency="EUR" if i % 4 else "USD",
                )
                for customer, count in ((survivor, 2), (duplicate, 17))
                for i in range(count)
            ]
            + [m.TagCustomer(customer_id=duplicate, tag="vip")],
            CTX,
        )
        runner.catch_up()
        before = {x: self.profile(read_store, x) for x in (survivor, duplicate)}
        analytics_before = self.purchases(read_store)
        assert self.members(read_store, "big") == {str(duplicate)}

        merged = service.execute(
            m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX
        )
        assert merged.events == ("customer.duplicate_absorbed",) * 3 + ("customer.merged_into",)
        runner.catch_up()
        shown = self.profile(read_store, survivor)
        aggregate = store.customer(survivor)
        assert shown["purchases"]["count"] == 19 == len(aggregate.purchases)
        assert shown["purchases"]["total"] == {
            c: str(t) for c, t in sorted(aggregate.purchase_totals().items())
        }
        assert (shown["email"], shown["tags"]) == ("dee@example.com", ["vip"])
        taken_over = {
            (str(survivor), order): row
            for (owner, order), row in analytics_before.items()
            if owner == str(duplicate)
        }
        assert self.purchases(read_store) == {**analytics_before, **taken_over}
        assert self.members(read_store, "big") == {str(survivor)}
        with read_store.transaction() as tx:
            rows, _ = audit_history.history(tx, survivor)
        parts = [r["data"]["part"] for r in rows if r["type"] == "customer.duplicate_absorbed"]
        assert parts == [1, 2, 3]

        undone = service.execute(
            m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX
        )
        assert undone.events == ("customer.unmerged",) * 4
        runner.catch_up()
        for customer, shown_before in before.items():
            after = self.profile(read_store, customer)
            assert {k: v for k, v in after.items() if k not in MOVING} == {
                k: v for k, v in shown_before.items() if k not in MOVING
            }
        assert self.purchases(read_store) == analytics_before
        assert self.members(read_store, "big") == {str(duplicate)}
        self.assert_rebuilds_equal_live(store, read_store)

    def purchases(self, read_store: ReadStore) -> dict[tuple[str, str], tuple[Any, ...]]:
        with read_store.transaction() as tx:
            rows = tx.fetchall("SELECT * FROM analytics_purchases")
        return {(r[0], r[1]): tuple(r[2:]) for r in rows}
