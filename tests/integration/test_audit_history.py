"""Audit history read model, on small hand-made histories, run on SQLite and on PostgreSQL: the
diff each event records (profile updates, consents, churn, merge, unmerge, erasure), erased
histories that equal a rebuild on every erasure path, and queries by actor, type and time with
paging. The two-year analytics simulation is in ``test_audit_analytics``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild
from consumers.store_feed import StoreFeed
from infra.readstore import ReadStore
from infra.store import EventStore
from projections import audit_history
from tests.integration.audit_analytics_support import AuditAnalyticsContract, projectors


class TestAuditHistory(AuditAnalyticsContract):
    def test_audit_diffs_for_update_merge_unmerge_and_erasure(
        self, world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]
    ) -> None:
        _, read_store, service, runner = world
        clerk, admin = Context(actor="clerk"), Context(actor="admin", correlation_id="case-9")
        ann = service.execute(
            m.RegisterCustomer(name="Ann", email="ann@example.com", attributes={"city": "Oslo"}),
            clerk,
        ).customer_id
        bob = service.execute(m.RegisterCustomer(name="Bob", phone="+4930901820"), clerk)
        assert ann is not None and bob.customer_id is not None
        bob_id = bob.customer_id
        outcomes = service.execute_batch(
            [
                m.TagCustomer(customer_id=bob_id, tag="vip"),
                m.RecordPurchase(
                    customer_id=bob_id, order_id="b-1", amount="30.00", currency="EUR"
                ),
                m.UpdateProfile(
                    customer_id=ann,
                    changes={"name": "Ann B", "attributes": {"city": "Rome", "size": "M"}},
                ),
                m.SetConsent(customer_id=ann, purpose="email_marketing", granted=True),
                m.SetConsent(customer_id=ann, purpose="email_marketing", granted=False),
                m.ChurnCustomer(customer_id=ann),
            ],
            clerk,
        )
        assert [o.problem for o in outcomes if o.problem] == []
        service.execute(m.MergeCustomers(customer_id=ann, duplicate_id=bob_id), admin)
        service.execute(m.UnmergeCustomers(customer_id=ann, duplicate_id=bob_id), admin)
        runner.catch_up()
        with read_store.transaction() as tx:
            rows, _ = audit_history.history(tx, ann)
            bobs, _ = audit_history.history(tx, bob_id)
        diffs = {r["type"]: r["diff"] for r in rows[1:]}
        assert rows[0]["type"] == "customer.registered" and rows[0]["diff"]["name"] == [None, "Ann"]
        assert diffs["customer.profile_updated"] == {
            "name": ["Ann", "Ann B"],
            "attributes.city": ["Oslo", "Rome"],
            "attributes.size": [None, "M"],
        }
        assert [r["diff"] for r in rows if r["type"].startswith("customer.consent")] == [
            {"consents.email_marketing": [None, True]},
            {"consents.email_marketing": [True, False]},
        ]
        assert diffs["customer.churned"] == {
            "lifecycle_stage": ["prospect", "churned"],
            "status": ["active", "churned"],
        }
        absorbed, given_back = diffs["customer.duplicate_absorbed"], diffs["customer.unmerged"]
        bob_diffs = {r["type"]: r for r in bobs}
        bought = bob_diffs["customer.purchase_recorded"]["diff"]["purchases.first_at"][1]
        assert absorbed == {
            "phone": [None, "+4930901820"],
            "tags": [[], ["vip"]],
            "purchases.count": [0, 1],
            "purchases.total": [{}, {"EUR": "30.00"}],
            "purchases.first_at": [None, bought],
            "purchases.last_at": [None, bought],
        }
        assert given_back == {k: [after, before] for k, (before, after) in absorbed.items()}
        assert [(r["type"], r["diff"], r["actor"], r["correlation_id"]) for r in bobs[-2:]] == [
            (
                "customer.merged_into",
                {"status": ["active", "merged"], "merged_into": [None, str(ann)]},
                "admin",
                "case-9",
            ),
            (
                "customer.unmerged",
                {"status": ["merged", "active"], "merged_into": [str(ann), None]},
                "admin",
                "case-9",
            ),
        ]

        service.execute(m.EraseCustomer(customer_id=ann), admin)
        runner.catch_up()
        with read_store.transaction() as tx:
            erased, _ = audit_history.history(tx, ann)
            bobs_after, _ = audit_history.history(tx, bob_id)
        assert erased[-1]["type"] == "customer.erased" and erased[-1]["diff"] == {
            "status": ["churned", "erased"]
        }
        assert erased[1]["diff"] == {}  # name and attributes only: nothing left to show
        assert erased[0]["data"]["attributes"] == {} and erased[0]["data"]["email"] is None
        for secret in ("ann@example.com", "Ann", "Rome", "Oslo", "+4930901820"):
            assert secret not in repr(erased)
        assert bobs_after == bobs  # the other customer's history is untouched

    def test_erased_histories_equal_a_rebuild_on_every_erasure_path(
        self, world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]
    ) -> None:
        """Issue 13 item 6: live blanking kept keys a rebuild leaves out ("email": null)."""
        store, read_store, service, runner = world
        clerk = Context(actor="clerk")

        def register(name: str, email: str, **fields: Any) -> UUID:
            command = m.RegisterCustomer(name=name, email=email, **fields)
            customer = service.execute(command, clerk).customer_id
            assert customer is not None
            return customer

        def everything_personal(customer: UUID, order: str) -> list[m.Command]:
            return [
                m.UpdateProfile(customer_id=customer, changes={"name": "New", "phone": None}),
                m.UpdateProfile(customer_id=customer, changes={"attributes": {"size": "M"}}),
                m.RecordContact(
                    customer_id=customer, channel="email", direction="inbound", subject="Hi"
                ),
                m.RecordContact(customer_id=customer, channel="sms", direction="outbound"),
                m.RecordFeedback(customer_id=customer, nps=3, comment="slow"),
                m.RecordPurchase(
                    customer_id=customer,
                    order_id=order,
                    amount="9.50",
                    currency="EUR",
                    items=[{"sku": "tea", "name": "Green tea"}],
                ),
            ]

        fed_each_time = register("Ann", "ann@example.com", attributes={"city": "Oslo"})
        for command in everything_personal(fed_each_time, "a-1"):
            service.execute(command, clerk)
            runner.catch_up()
        in_one_batch = register("Bea", "bea@example.com", phone="+4930901820")
        survivor = register("Cy", "cy@example.com")
        duplicate = register("Dee", "dee@example.com", phone="+4930901821")
        runner.catch_up()
        holder = register("Eve", "eve@example.com")
        unmerged = register("Fay", "fay@example.com", phone="+4930901822")
        runner.catch_up()
        service.execute_batch(everything_personal(in_one_batch, "b-1"), clerk)
        service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), clerk)
        service.execute(m.MergeCustomers(customer_id=holder, duplicate_id=unmerged), clerk)
        service.execute(m.UnmergeCustomers(customer_id=holder, duplicate_id=unmerged), clerk)
        runner.catch_up()
        # erasing the survivor erases the duplicate merged into it; the unmerged duplicate's
        # erasure reaches the copies its merge left in the holder's history
        for customer in (fed_each_time, survivor, unmerged):
            service.execute(m.EraseCustomer(customer_id=customer), clerk)
            runner.catch_up()
        service.execute(m.EraseCustomer(customer_id=in_one_batch), clerk)  # with its events
        runner.catch_up()

        for projector in projectors():
            result = rebuild(StoreFeed(store), read_store, projector, verify_only=True)
            assert result.differences == [], projector.name
        with read_store.transaction() as tx:
            history, _ = audit_history.history(tx, fed_each_time)
        assert history[0]["data"]["attributes"] == {} and "email" not in history[0]["diff"]
        assert history[-1]["diff"] == {"status": ["active", "erased"]}
        purchase = next(r for r in history if r["type"] == "customer.purchase_recorded")
        assert purchase["data"]["items"] == [{"sku": "tea", "name": "Green tea"}]  # not personal
        with read_store.transaction() as tx:
            kept, _ = audit_history.history(tx, holder)
        assert "eve@example.com" in repr(kept) and "fay@example.com" not in repr(kept)
        assert "+4930901822" not in repr(kept)

    def test_audit_queries_by_actor_type_and_time_with_paging(
        self, world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]
    ) -> None:
        _, read_store, service, runner = world
        clerk, admin = Context(actor="clerk"), Context(actor="admin")
        ids = []
        for i in range(5):
            registered = service.execute(m.RegisterCustomer(name=f"P{i}"), clerk).customer_id
            assert registered is not None
            ids.append(registered)
        middle = datetime.now(UTC)
        for customer in ids:
            service.execute(m.TagCustomer(customer_id=customer, tag="x"), admin)
        service.execute(m.UpdateProfile(customer_id=ids[0], changes={"name": "Q0"}), admin)
        runner.catch_up()
        with read_store.transaction() as tx:
            everything, none_left = audit_history.search(tx, limit=1000)
            pages, cursor = [], None
            while True:
                page, cursor = audit_history.search(tx, actor="admin", cursor=cursor, limit=2)
                pages.append(page)
                if cursor is None:
                    break
            tagged, _ = audit_history.search(tx, type="customer.tagged", actor="admin")
            before, _ = audit_history.search(tx, end=middle)
            after, _ = audit_history.search(tx, start=middle)
            first, more = audit_history.history(tx, ids[0], limit=2)
            rest, _ = audit_history.history(tx, ids[0], cursor=more, limit=2)
            with pytest.raises(ValueError, match="cursor"):
                audit_history.search(tx, cursor="not-a-cursor!")
        assert none_left is None and len(everything) == 11
        assert [p["position"] for p in everything] == sorted(p["position"] for p in everything)
        assert [len(p) for p in pages] == [2, 2, 2] and all(
            r["actor"] == "admin" for page in pages for r in page
        )
        assert [r["customer_id"] for r in tagged] == [str(c) for c in ids]
        assert {r["type"] for r in before} == {"customer.registered"} and len(before) == 5
        assert after == [r for page in pages for r in page]
        assert [r["version"] for r in first + rest] == [1, 2, 3] and more is not None
        assert first[0]["recorded_at"] < audit_history.utc(middle) <= after[0]["recorded_at"]
