"""Analytics against expectations computed independently, in plain Python, from the fixture
(≥ 1,000 purchases), on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild
from consumers.store_feed import StoreFeed
from infra.store import EventStore
from projections import analytics
from projections.framework import ensure_schema
from projections.readstore import ReadStore, open_read_store

CTX = Context(actor="fixture")
NOW = datetime.now(UTC)


def fixture(service: CommandService) -> dict[str, Any]:
    """160 customers, ≥ 1,000 purchases over two years, feedback, churns and reactivations."""
    rng = random.Random(2026)
    ids = [
        o.customer_id
        for o in service.execute_batch([m.RegisterCustomer(name=f"C{i}") for i in range(160)], CTX)
    ]
    purchases: dict[UUID, list[tuple[datetime, Decimal]]] = defaultdict(list)
    commands: list[m.Command] = []
    for index, customer in enumerate(ids):
        assert customer is not None
        for n in range(rng.randint(4, 10)):
            when = NOW - timedelta(days=rng.randint(0, 730), hours=rng.randint(0, 23))
            amount = Decimal(rng.randint(100, 50_000)) / 100
            purchases[customer].append((when, amount))
            commands.append(
                m.RecordPurchase(
                    customer_id=customer,
                    order_id=f"{index}-{n}",
                    amount=str(amount),
                    currency="EUR",
                    occurred_at=when,
                )
            )
        if index % 5 == 0:
            commands.append(
                m.RecordPurchase(
                    customer_id=customer, order_id=f"{index}-usd", amount="99.00", currency="USD"
                )
            )
    nps: dict[UUID, int] = {}
    csat: dict[UUID, int] = {}
    for customer in ids[:120]:
        assert customer is not None
        for _ in range(rng.randint(1, 2)):
            score, happy = rng.randint(0, 10), rng.randint(1, 5)
            nps[customer], csat[customer] = score, happy
            commands.append(m.RecordFeedback(customer_id=customer, nps=score, csat=happy))
    churned = ids[100:130]
    commands += [m.ChurnCustomer(customer_id=c) for c in churned]
    commands += [m.ReactivateCustomer(customer_id=c) for c in churned[:5]]
    for start in range(0, len(commands), 400):
        assert all(
            o.status == "accepted"
            for o in service.execute_batch(commands[start : start + 400], CTX)
        )
    assert sum(len(p) for p in purchases.values()) >= 1000
    return {"ids": ids, "purchases": purchases, "nps": nps, "csat": csat, "churned": churned}


def expected_rfm(
    purchases: dict[UUID, list[tuple[datetime, Decimal]]], end: datetime
) -> dict[str, dict[str, Any]]:
    result = {}
    for customer, rows in purchases.items():
        per_day: dict[date, Decimal] = defaultdict(Decimal)
        for when, amount in rows:
            per_day[when.astimezone(UTC).date()] += amount
        ordered = sorted(per_day)
        repeat = ordered[1:]
        result[str(customer)] = {
            "frequency": len(repeat),
            "recency": (ordered[-1] - ordered[0]).days,
            "T": (end.date() - ordered[0]).days,
            "monetary": str(
                (sum((per_day[d] for d in repeat), Decimal(0)) / len(repeat)).quantize(
                    Decimal("0.01")
                )
            )
            if repeat
            else "0.00",
        }
    return result


class AnalyticsContract:
    @pytest.fixture
    def database_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def world(self, database_url: str) -> Iterator[tuple[EventStore, ReadStore, dict[str, Any]]]:
        store = EventStore(database_url)
        read_store = open_read_store(database_url)
        ensure_schema(read_store, [analytics.AnalyticsProjector()])
        data = fixture(CommandService(store, index_key="k"))
        EmbeddedRunner(
            StoreFeed(store), read_store, [analytics.AnalyticsProjector()], batch_size=500
        ).catch_up()
        yield store, read_store, data
        read_store.close()
        store.close()

    def test_rfm_nps_csat_churn_lifecycle(
        self, world: tuple[EventStore, ReadStore, dict[str, Any]]
    ) -> None:
        store, read_store, data = world
        end = NOW + timedelta(minutes=5)
        with read_store.transaction() as tx:
            rfm = analytics.rfm(tx, end)
            satisfaction = analytics.satisfaction(tx)
            stages = analytics.lifecycle(tx)
            churn = analytics.churn(
                tx, "month", (NOW - timedelta(days=40)).date(), (NOW + timedelta(days=31)).date()
            )
        want = expected_rfm(data["purchases"], end)
        assert {
            c: {k: v for k, v in r.items() if k in ("frequency", "recency", "T", "monetary")}
            for c, r in rfm.items()
        } == want
        assert all(1 <= r[k] <= 5 for r in rfm.values() for k in ("r", "f", "m")) and {
            r["group"] for r in rfm.values()
        } - {"needs_attention"}
        # quintile sizes are balanced: 160 customers → 32 per score
        assert sorted(sum(1 for r in rfm.values() if r["f"] == s) for s in range(1, 6)) == [32] * 5
        scores = list(data["nps"].values())
        assert satisfaction["nps"] == {
            "score": round(
                100 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores), 4
            ),
            "responses": 120,
        }
        happy = list(data["csat"].values())
        assert satisfaction["csat"] == {
            "score": round(100 * sum(s >= 4 for s in happy) / len(happy), 4),
            "responses": 120,
        }
        assert stages["stages"]["churned"] == 25 and sum(stages["stages"].values()) == 160
        this_month = next(
            p for p in churn if p["period"] == date(NOW.year, NOW.month, 1).isoformat()
        )
        assert (this_month["churned"], this_month["active_at_start"]) == (
            0,
            0,
        )  # all registered this month
        next_month = churn[-1]
        assert next_month["active_at_start"] == 160 - 25 and next_month["churned"] == 0
        assert (
            rebuild(
                StoreFeed(store), read_store, analytics.AnalyticsProjector(), verify_only=True
            ).differences
            == []
        )


class TestSQLiteAnalytics(AnalyticsContract):
    @pytest.fixture
    def database_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'an.db'}"


@pytest.mark.integration
class TestPostgresAnalytics(AnalyticsContract):
    @pytest.fixture
    def database_url(self, postgres_url: str) -> str:
        return postgres_url
