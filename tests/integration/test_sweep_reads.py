"""A policy sweep reads the store a fixed number of times per batch of customers, however many
customers the batch holds and however long their histories (issue 18): each batch's histories
are one query (:func:`infra.bulk_load.histories`), never one per customer.

Reads are counted where they reach the database: every ``SELECT`` run on a cursor (SQLite and
PostgreSQL), during a
sweep of the lifecycle and of the loyalty policy over 10 customers and over 60 (each one batch
of 500), both when the sweep records decisions and when it finds nothing due.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from eventsourcing.sqlite import SQLiteCursor

from commands import messages as m
from commands.policies import PolicyService
from commands.service import CommandService, Context
from consumers.lifecycle_policy import LifecycleRunner
from consumers.loyalty_policy import LoyaltyRunner
from infra.backends.event_statistics import CHECK
from infra.store import EventStore

DAY = timedelta(days=1)
T0 = datetime.now(UTC).replace(microsecond=0) - 400 * DAY
CLERK = Context(actor="clerk")
LOYALTY = {"earn": {"EUR": "1"}, "expiry_days": 90, "tiers": {"EUR": {"silver": "30"}}}


class Reads:
    """Counts the reading statements (``SELECT``, ``WITH``) run on SQLite (through
    eventsourcing's cursor) and on PostgreSQL (psycopg's), in this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for cursor in (SQLiteCursor, psycopg.Cursor):
            monkeypatch.setattr(cursor, "execute", self._counting(cursor.execute))

    def _counting(self, execute: Any) -> Any:
        def counting(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            text = query if isinstance(query, str) else query.as_string(None)
            # the writer's statistics check (once per 1,000+ events written, whatever the
            # batch) is the event store's upkeep, not a read of the sweep's
            if text.lstrip().upper().startswith(("SELECT", "WITH")) and text != CHECK:
                self.count += 1
            return execute(cursor, query, *args, **kwargs)

        return counting


def seed(service: CommandService, first: int, count: int) -> None:
    """``count`` customers with three purchases each over their first year (long histories
    would not change what a sweep reads: one query per batch)."""
    registered = service.execute_batch(
        [m.RegisterCustomer(name=f"P{n}", occurred_at=T0) for n in range(first, first + count)],
        CLERK,
    )
    purchases: list[m.Command] = []
    for outcome in registered:
        assert outcome.customer_id is not None
        purchases += [
            m.RecordPurchase(
                customer_id=outcome.customer_id,
                order_id=f"o{day}",
                amount="20.00",
                currency="EUR",
                occurred_at=T0 + day * DAY,
            )
            for day in (1, 5, 40)
        ]
    assert {o.status for o in service.execute_batch(purchases, CLERK)} == {"accepted"}


def statements_per_sweep(
    store: EventStore, service: CommandService, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, int, int]]:
    """(policy, reads of a sweep recording decisions, of a sweep finding none due)."""
    counts = []
    policies = PolicyService(store)
    for runner in (
        LifecycleRunner(store, service, policies),
        LoyaltyRunner(store, service, policies),
    ):
        reads = Reads(monkeypatch)
        recorded = runner.sweep()
        deciding = reads.count
        monkeypatch.undo()
        reads = Reads(monkeypatch)
        assert runner.sweep().recorded == 0
        counts.append((runner.name, deciding, reads.count))
        monkeypatch.undo()
        assert recorded.recorded > 0 and recorded.rejected == 0
    return counts


def test_a_sweep_reads_a_batch_of_customers_in_a_fixed_number_of_statements(
    store: EventStore, service: CommandService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10 customers, then 50 more (one batch of 500 customers; under 500 decisions, the
    command side's own batch): the same statements."""
    policies = PolicyService(store)
    policies.define("lifecycle", {}, Context(actor="ops"), effective_at=T0)
    policies.define("loyalty", LOYALTY, Context(actor="ops"), effective_at=T0)
    seed(service, 0, 10)
    small = statements_per_sweep(store, service, monkeypatch)
    seed(service, 10, 50)
    large = statements_per_sweep(store, service, monkeypatch)
    assert small == large, (small, large)
    for _, deciding, idle in large:  # with the erasure watch's two small reads
        assert deciding <= 12 and idle <= 7, large
