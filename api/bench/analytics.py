"""Analytics over a whole customer base, through ``clientele serve``: RFM pages (plain and
filtered; observed now and a year ago), one customer's RFM, lifecycle and churn — against the same API's plain list page
and a plain SELECT of the same RFM page, measured in the same run.

The base: registered customers, half of them one-time buyers, purchases back-dated over two
years on few distinct days and amounts (heavy ties), a share of them churned. The read
models are caught up by a rebuild before ``serve`` starts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import psycopg

from api.bench import workload
from api.bench.harness import Sizes, Stack, summary
from api.bench.http import Pool, closed_loop
from api.bench.write_side import serve
from bootstrap import build
from commands import messages as m
from consumers.migrate import migrate
from consumers.rebuild import rebuild_all, worker_count

Say = Callable[[str], None]
CONCURRENCY = 4  # analysts at once
FILTERS = ["", "&group=champions", "&group=lost", "&r=5", "&f=1&m=1", "&group=at_risk&m=5"]
PAGE = 50
READS = ("rfm_page", "rfm_page_year_ago", "customer_rfm", "lifecycle", "churn")  # the target's


def seed(stack: Stack, customers: int, rng: random.Random) -> tuple[str, list[UUID]]:
    """A fresh database with ``customers`` and their purchases, read models caught up."""
    settings = stack.settings(stack.database("analytics"))
    with build(settings) as services:
        migrate(services)
        if services.runner is not None:
            services.runner.stop()  # caught up by the rebuild below, in worker processes
        ids = [UUID(int=rng.getrandbits(128), version=4) for _ in range(customers)]
        since = datetime.now(UTC) - timedelta(days=HISTORY_DAYS + 1)  # before every purchase
        names: list[m.Command] = [
            m.RegisterCustomer(customer_id=c, name=f"Customer {c.hex[:6]}", occurred_at=since)
            for c in ids
        ]
        history = _history(ids, rng)
        for commands in (names, history):
            accepted = workload.run_batches(services.commands, commands)
            if accepted != len(commands):  # measuring a thinner base than announced
                raise RuntimeError(f"seed: {len(commands) - accepted} commands rejected")
        workers = worker_count(services.settings.rebuild_workers)
        rebuild_all(
            services.feed,
            services.read_store,
            services.projectors,
            workers=workers,
            connect=services.connect_worker,
        )
    return settings.database_url, ids


HISTORY_DAYS = 730  # purchases over the last two years


def _history(ids: list[UUID], rng: random.Random) -> list[m.Command]:
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=rng.randrange(1, HISTORY_DAYS)) for _ in range(120)]
    commands: list[m.Command] = []
    for number, customer in enumerate(ids):
        bought = 1 if rng.random() < 0.5 else rng.randint(2, 8)
        for purchase in range(bought):
            commands.append(
                m.RecordPurchase(
                    customer_id=customer,
                    order_id=f"{number}-{purchase}",
                    amount=rng.choice(["0.00", "9.99", "25.00", "49.90", "120.00"]),
                    currency="EUR",
                    occurred_at=rng.choice(days),
                )
            )
        if rng.random() < 0.15:
            commands.append(m.ChurnCustomer(customer_id=customer))
    rng.shuffle(commands)  # customers mixed; a purchase after a churn reactivates
    return commands


def run(stack: Stack, sizes: Sizes, say: Say) -> dict[str, Any]:
    """Seed, start ``serve``, then every kind of read ``sizes.repeats`` times."""
    rng = random.Random(23)
    say(f"analytics: {sizes.analytics_customers:,} customers with two years of purchases …")
    database_url, ids = seed(stack, sizes.analytics_customers, rng)
    settings = stack.settings(database_url)
    port, _ = serve(stack, settings, "serve-analytics")
    token = stack.api_key()
    return asyncio.run(_measure(database_url, port, token, ids=ids, sizes=sizes, say=say))


async def _measure(
    database_url: str, port: int, token: str, *, ids: list[UUID], sizes: Sizes, say: Say
) -> dict[str, Any]:
    rng = random.Random(29)
    n = sizes.analytics_requests
    kinds: dict[str, list[dict[str, float]]] = {}
    async with Pool(port, token, CONCURRENCY) as pool:
        today = datetime.now(UTC).date()
        year_ago = today - timedelta(days=365)
        past = f"/v1/analytics/rfm?currency=EUR&at={year_ago}T00:00:00Z"
        cursors = await _cursors(pool, "/v1/analytics/rfm?currency=EUR")
        past_cursors = await _cursors(pool, past)
        plain = await _cursors(pool, "/v1/customers?")
        requests: dict[str, Callable[[], tuple[str, str, bytes]]] = {
            "rfm_page": lambda: _get(
                f"/v1/analytics/rfm?currency=EUR&limit={PAGE}&cursor={rng.choice(cursors)}"
                + rng.choice(FILTERS)
            ),
            "rfm_page_year_ago": lambda: _get(
                f"{past}&limit={PAGE}&cursor={rng.choice(past_cursors)}" + rng.choice(FILTERS)
            ),
            "customer_rfm": lambda: _get(f"/v1/customers/{rng.choice(ids)}/rfm"),
            "lifecycle": lambda: _get("/v1/analytics/lifecycle"),
            "churn": lambda: _get(f"/v1/analytics/churn?period=month&from={year_ago}&to={today}"),
            "baseline_list_page": lambda: _get(
                f"/v1/customers?limit={PAGE}&cursor={rng.choice(plain)}"
            ),
        }
        for repeat in range(sizes.repeats):
            for kind, make in requests.items():
                await closed_loop(pool, make, max(10, n // 10), CONCURRENCY)  # warm
                latencies, _, failures = await closed_loop(pool, make, n, CONCURRENCY)
                if failures:
                    raise RuntimeError(f"{kind}: {failures} requests failed")
                kinds.setdefault(kind, []).append(summary([x * 1000 for x in latencies]))
            say(
                f"analytics {repeat + 1}/{sizes.repeats}: RFM page p99 "
                f"{kinds['rfm_page'][-1]['p99']:.1f} ms, churn p99 {kinds['churn'][-1]['p99']:.1f} ms"
            )
        cold = await _cold(pool, ids, rng, max(5, n // 20))
    raw = _raw_select(database_url, sizes.repeats * n)
    result: dict[str, Any] = {
        kind: _median(runs) for kind, runs in kinds.items() if kind != "baseline_list_page"
    }
    result |= {
        "customers": len(ids),
        "concurrency": CONCURRENCY,
        "requests_per_kind": n,
        "page_size": PAGE,
        "p99_ms": max(result[k]["p99_ms"] for k in READS),
        "target_p99_ms": 50.0,
        "baseline_list_page": _median(kinds["baseline_list_page"]),
        "baseline_raw_select": raw,
        "rfm_page_after_a_purchase": cold,
    }
    return result


def _get(path: str) -> tuple[str, str, bytes]:
    return "GET", path, b""


def _median(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Median over the repeats of each statistic, and the repeats themselves."""
    return {
        "p50_ms": summary([r["p50"] for r in runs])["median"],
        "p99_ms": summary([r["p99"] for r in runs])["median"],
        "repeats": runs,
    }


async def _cursors(pool: Pool, first: str, pages: int = 20) -> list[str]:
    """The cursors of the first ``pages`` pages of a list ("" for the first)."""
    cursors = [""]
    while len(cursors) < pages:
        status, body = await pool.request("GET", f"{first}&limit={PAGE}&cursor={cursors[-1]}")
        if status != 200:
            raise RuntimeError(f"{first}: {status} {body[:300]!r}")
        following = orjson.loads(body)["next_cursor"]
        if not following:
            break
        cursors.append(following)
    return cursors


async def _cold(pool: Pool, ids: list[UUID], rng: random.Random, samples: int) -> dict[str, Any]:
    """An RFM page right after a purchase changed the ranks (the cut cache is invalid)."""
    latencies = []
    for number in range(samples):
        body = {"order_id": f"cold-{number}", "amount": "30.00", "currency": "EUR"}
        status, answer = await pool.request(
            "POST", f"/v1/customers/{rng.choice(ids)}/purchases", orjson.dumps(body)
        )
        if status >= 300:
            raise RuntimeError(f"purchase: {status} {answer[:300]!r}")
        caught_up = {"X-Min-Position": str(orjson.loads(answer)["position"])}
        await pool.request("GET", "/v1/analytics/lifecycle", headers=caught_up)  # applied
        started = time.perf_counter()
        status, answer = await pool.request("GET", f"/v1/analytics/rfm?currency=EUR&limit={PAGE}")
        if status != 200:
            raise RuntimeError(f"cold page: {status} {answer[:300]!r}")
        latencies.append((time.perf_counter() - started) * 1000)
    stats = summary(latencies)
    return {"p50_ms": stats["p50"], "p99_ms": stats["p99"], "samples": samples}


def _raw_select(database_url: str, count: int) -> dict[str, Any]:
    """The RFM page's rows by a plain SELECT in this process: the floor under any API."""
    day = datetime.now(UTC).date().isoformat()
    latencies = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        for _ in range(count):
            started = time.perf_counter()
            conn.execute(
                "SELECT customer_id, day, first_day, frequency, monetary_cents FROM analytics_rfm "
                "WHERE currency = 'EUR' AND live = 1 AND day <= %s AND until > %s "
                "AND customer_id > '' ORDER BY customer_id LIMIT %s",
                (day, day, PAGE + 1),
            ).fetchall()
            latencies.append((time.perf_counter() - started) * 1000)
    stats = summary(latencies)
    return {"p50_ms": stats["p50"], "p99_ms": stats["p99"]}
