"""GET profile's async read path (:mod:`projections.profile_reads`, issue 16 round 5) on
PostgreSQL: on a generated population (every event type, merges, a merge chain, unmerges,
erasures, legacy events, unicode text, a churn fit with purchases) it answers byte for byte
what the sync path answers (``X-Min-Position`` sends a read down the sync path), for every
customer and an unknown id, masked or not by the key's role and ``pii`` scope; and the async
path did answer the live customers (its pool's request count)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from bootstrap import Services
from bootstrap.policy_processes import model_fitter
from commands.service import Context
from infra.async_reads import AsyncReads
from tests.api_support import running_api
from tests.published_support import generated_store

pytestmark = pytest.mark.integration

WHO = ("reader", "reader+pii", "admin", "writer+reader")


def test_async_and_sync_paths_answer_the_same_bytes(tmp_path: Path, postgres_url: str) -> None:
    with running_api(tmp_path, postgres_url) as api:
        services: Services = api.app.state.services
        generated_store(services.store)
        assert services.runner is not None
        services.runner.catch_up()  # the fit reads the purchases the read models hold
        model_fitter(services).fit(datetime.now(UTC), 30, Context(actor="a"))
        services.runner.catch_up()
        with services.read_store.snapshot() as tx:
            rows = tx.fetchall("SELECT customer_id, status FROM {profiles} ORDER BY customer_id")
            fits = tx.fetchall("SELECT scope FROM {segment_churn_model}")
        assert ("churn",) in fits
        statuses = {status for _, status in rows}
        assert {"active", "merged", "erased"} <= statuses, statuses
        ids = [customer_id for customer_id, _ in rows] + [str(uuid4())]
        answered = {"sync": 0, "async": 0}
        with_risk = 0
        for customer_id in ids:
            for who in WHO:
                path = f"/v1/customers/{customer_id}"
                fast = api.client.get(path, headers=api.headers(who))
                slow = api.client.get(path, headers=api.headers(who, **{"X-Min-Position": "0"}))
                assert fast.status_code == slow.status_code, (customer_id, who, fast.text)
                assert fast.content == slow.content, (customer_id, who)
                assert fast.headers.get("etag") == slow.headers.get("etag")
                assert fast.headers["content-type"] == slow.headers["content-type"]
                answered["async" if fast.status_code == 200 else "sync"] += 1
                if fast.status_code == 200 and fast.json()["churn_risk"] is not None:
                    with_risk += 1
        assert answered["async"] >= 30 * len(WHO), answered
        assert answered["sync"] >= 4 * len(WHO), answered  # merged, erased, unknown
        assert with_risk > 0
        reads: AsyncReads = api.app.state.async_reads
        assert reads.stats()["requests_num"] >= len(ids) * len(WHO)


@pytest.mark.parametrize("where", ["url", "environment"])
def test_async_reads_are_read_only_and_keep_libpq_options(
    postgres_url: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read-only sessions, and the URL's or ``PGOPTIONS``' libpq ``options`` still apply (a
    start-up ``options`` of the pool's own replaced them)."""
    url = postgres_url
    if where == "url":
        url += "?options=-c%20statement_timeout%3D4321"
    else:
        monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=4321")

    async def settings() -> tuple[object, ...] | None:
        reads = AsyncReads(url, pool_size=1)
        try:
            return await reads.fetchone(
                "SELECT current_setting('default_transaction_read_only'), "
                "current_setting('statement_timeout')"
            )
        finally:
            await reads.close()

    assert asyncio.run(settings()) == ("on", "4321ms")
