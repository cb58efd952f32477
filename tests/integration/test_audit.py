"""Audit history read model on SQLite and PostgreSQL: diffs, queries, erasure, idempotency."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild
from consumers.store_feed import StoreFeed
from infra.store import EventStore
from projections import audit
from projections.framework import Binding, ensure_schema, project
from projections.readstore import ReadStore, open_read_store


class AuditContract:
    @pytest.fixture
    def database_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def world(
        self, database_url: str
    ) -> Iterator[tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]]:
        store = EventStore(database_url)
        read_store = open_read_store(database_url)
        ensure_schema(read_store, [audit.AuditProjector()])
        runner = EmbeddedRunner(
            StoreFeed(store), read_store, [audit.AuditProjector()], batch_size=7
        )
        yield store, read_store, CommandService(store, index_key="k"), runner
        read_store.close()
        store.close()

    def test_history_diffs_queries_and_erasure(
        self, world: tuple[EventStore, ReadStore, CommandService, EmbeddedRunner]
    ) -> None:
        store, read_store, service, runner = world
        clerk, admin = Context(actor="clerk"), Context(actor="admin", correlation_id="case-9")
        ann = service.execute(
            m.RegisterCustomer(name="Ann", email="ann@example.com", attributes={"city": "Oslo"}),
            clerk,
        ).customer_id
        bob = service.execute(
            m.RegisterCustomer(name="Bob", phone="+4930901820"), clerk
        ).customer_id
        assert ann and bob
        service.execute(
            m.UpdateProfile(
                customer_id=ann, changes={"name": "Ann B", "attributes": {"city": "Rome"}}
            ),
            clerk,
        )
        service.execute(
            m.SetConsent(customer_id=ann, purpose="profiling", granted=True, source="app"), clerk
        )
        service.execute(m.MergeCustomers(customer_id=ann, duplicate_id=bob), admin)
        service.execute(m.UnmergeCustomers(customer_id=ann, duplicate_id=bob), admin)
        runner.catch_up()
        with read_store.transaction() as tx:
            history, _ = audit.search(tx, customer_id=ann)
            assert [h["type"] for h in history] == [
                "customer.registered",
                "customer.profile_updated",
                "customer.consent_granted",
                "customer.duplicate_absorbed",
                "customer.unmerged",
            ]
            assert history[1]["diff"] == {
                "name": ["Ann", "Ann B"],
                "attributes.city": ["Oslo", "Rome"],
            }
            assert history[2]["diff"] == {"consents.profiling": [None, True]}
            assert history[3]["diff"]["phone"] == [None, "+4930901820"] and history[4]["diff"][
                "phone"
            ] == ["+4930901820", None]
            by_admin, _ = audit.search(tx, actor="admin")
            assert {(h["customer_id"], h["type"]) for h in by_admin} == {
                (str(ann), "customer.duplicate_absorbed"),
                (str(ann), "customer.unmerged"),
                (str(bob), "customer.merged_into"),
                (str(bob), "customer.unmerged"),
            } and all(h["correlation_id"] == "case-9" for h in by_admin)
            page, cursor = audit.search(tx, type="customer.registered", limit=1)
            rest, end = audit.search(tx, type="customer.registered", cursor=cursor, limit=1)
            assert [p["customer_id"] for p in page + rest] == [str(ann), str(bob)] and end is None
            future = datetime.now(UTC) + timedelta(hours=1)
            assert (
                audit.search(tx, start=future)[0] == []
                and len(list(audit.export(tx, None, future, chunk=3))) == 8
            )

        service.execute(m.EraseCustomer(customer_id=ann), admin)
        runner.catch_up()
        with read_store.transaction() as tx:
            text = str(audit.search(tx, customer_id=ann)[0])
        for secret in ("ann@example.com", "Ann B", "Rome", "Oslo"):
            assert secret not in text
        assert (
            rebuild(
                StoreFeed(store), read_store, audit.AuditProjector(), verify_only=True
            ).differences
            == []
        )

        envelopes = StoreFeed(store).read(0, 1000)
        with read_store.transaction() as tx:
            before = tx.fetchall("SELECT * FROM audit_events ORDER BY position")
            project(tx, [Binding.live(audit.AuditProjector())], envelopes, by_position=False)
            assert tx.fetchall("SELECT * FROM audit_events ORDER BY position") == before
        assert isinstance(ann, UUID)


class TestSQLiteAudit(AuditContract):
    @pytest.fixture
    def database_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'a.db'}"


@pytest.mark.integration
class TestPostgresAudit(AuditContract):
    @pytest.fixture
    def database_url(self, postgres_url: str) -> str:
        return postgres_url
