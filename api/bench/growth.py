"""One customer growing by batches of purchases, in full mode: does each batch cost the same?

Issue 13: seven ``POST /v1/commands:batch`` of 1,000 purchases with 100-character order ids,
all for ONE customer, took 2.3 s for the first batch and 10.8 s for the seventh. Here
``serve``, ``relay`` and ``consume`` run as processes on fresh PostgreSQL and tansu. Each
repeat takes a new customer and, ``growth_batches`` times, sends:

* a batch on a brand-new customer: the **baseline**, the same request without any history,
  measured in the same minute as the batch it is compared with;
* the next batch on the growing customer.

Each is timed until acknowledged (``ack``) and until the profiles read model shows its last
event (``visible``: relay, broker, consumer and all four projections). Ratios pair batches of
the same repeat, so a host that gets busier between repeats does not move them; each is the
median over repeats. ``ratio``: the growing customer's last batch over the fresh customer's
batch just before it (ack); ``first_to_last``: the growing customer's last batch over its
first; ``visible_ratio``: as ``ratio``, for visibility.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import psycopg

from api.bench.harness import Sizes, Stack, summary, wait_for
from api.bench.http import Pool
from api.bench.write_side import serve
from bootstrap import build
from consumers.migrate import migrate

Say = Callable[[str], None]
TARGET_RATIO = 1.25


def _order(repeat: int, batch: int, n: int) -> str:
    return f"r{repeat}-b{batch}-{n:05d}-".ljust(100, "x")  # 100 characters, as reported


def run(stack: Stack, sizes: Sizes, say: Say) -> dict[str, Any]:
    """Start the processes, then grow one customer per repeat (module docstring)."""
    settings = stack.settings(stack.database("growth"), "growth.")
    stack.topics("growth.", 12)
    with build(settings) as services:
        migrate(services)
    relay = stack.spawn(settings, "relay", "relay")
    consumer = stack.spawn(settings, "consume", "consume")
    port, _ = serve(stack, settings)
    token = stack.api_key()
    for name, child in (("relay", relay), ("consume", consumer)):
        if child.poll() is not None:
            raise RuntimeError(f"clientele {name} exited:\n{stack.log_tail(name)}")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        return asyncio.run(_measure(port, token, conn, sizes, say))


async def _measure(
    port: int, token: str, conn: psycopg.Connection[Any], sizes: Sizes, say: Say
) -> dict[str, Any]:
    growing: list[list[tuple[float, float]]] = [[] for _ in range(sizes.growth_batches)]
    fresh: list[list[tuple[float, float]]] = [[] for _ in range(sizes.growth_batches)]

    async def request(path: str, body: bytes) -> tuple[int, bytes]:
        # a connection per request: waiting for visibility may outlast the server's keep-alive
        async with Pool(port, token, 1) as pool:
            return await pool.request("POST", path, body)

    async def batch(customer: str, repeat: int, number: int) -> tuple[float, float]:
        """(ack, visible) seconds of one batch of purchases on ``customer``."""
        commands = [
            {
                "type": "purchase",
                "customer_id": customer,
                "order_id": _order(repeat, number, n),
                "amount": "12.50",
                "currency": "EUR",
            }
            for n in range(sizes.growth_batch_size)
        ]
        body = orjson.dumps({"commands": commands})
        sent = time.perf_counter()
        status, answer = await request("/v1/commands:batch", body)
        acked = time.perf_counter()
        results = orjson.loads(answer)["results"] if status == 200 else []
        if not results or any(r["status"] != "accepted" for r in results):
            raise RuntimeError(f"batch answered {status}: {answer[:300]!r}")
        version = max(r["version"] for r in results)
        await asyncio.to_thread(
            wait_for,
            lambda: _version(conn, customer) >= version,
            600,
            "batch visibility",
            0.01,
        )
        return acked - sent, time.perf_counter() - sent

    async def register(name: str) -> str:
        status, answer = await request("/v1/customers", orjson.dumps({"name": name}))
        if status != 201:
            raise RuntimeError(f"registration answered {status}: {answer[:300]!r}")
        customer: str = orjson.loads(answer)["customer_id"]
        return customer

    await batch(await register("Warm-up"), -1, 0)  # the consumer's group join, first use
    for repeat in range(sizes.repeats):
        customer = await register(f"Growing {repeat}")
        for number in range(sizes.growth_batches):
            fresh[number].append(
                await batch(await register(f"Fresh {repeat}/{number}"), repeat, -1)
            )
            growing[number].append(await batch(customer, repeat, number))
        say(
            f"growing customer {repeat + 1}/{sizes.repeats}: batch ack "
            + " → ".join(f"{ack * 1000:,.0f}" for ack, _ in (g[-1] for g in growing))
            + " ms"
        )
    return {"growing_customer": _result(growing, fresh, sizes)}


def _version(conn: psycopg.Connection[Any], customer: str) -> int:
    row = conn.execute(
        "SELECT version FROM profiles WHERE customer_id = %s", (customer,)
    ).fetchone()
    return int(row[0]) if row else 0


def _result(
    growing: list[list[tuple[float, float]]], fresh: list[list[tuple[float, float]]], sizes: Sizes
) -> dict[str, Any]:
    ack = [summary([a * 1000 for a, _ in samples]) for samples in growing]
    visible = [summary([v * 1000 for _, v in samples]) for samples in growing]
    baseline = summary([a * 1000 for samples in fresh for a, _ in samples])
    baseline_visible = summary([v * 1000 for samples in fresh for _, v in samples])

    def paired(over: list[tuple[float, float]], under: list[tuple[float, float]], i: int) -> float:
        return summary([o[i] / u[i] for o, u in zip(over, under, strict=True)])["median"]

    return {
        "batches": sizes.growth_batches,
        "commands_per_batch": sizes.growth_batch_size,
        "order_id_chars": 100,
        "first_ack_ms": ack[0]["median"],
        "last_ack_ms": ack[-1]["median"],
        "baseline_ack_ms": baseline["median"],
        "ratio": paired(growing[-1], fresh[-1], 0),
        "first_to_last": paired(growing[-1], growing[0], 0),
        "visible_ratio": paired(growing[-1], fresh[-1], 1),
        "target_ratio": TARGET_RATIO,
        "repeats": {
            "ack_ms": ack,
            "visible_ms": visible,
            "baseline_ack_ms": baseline,
            "baseline_visible_ms": baseline_visible,
            "growing_ack_ms": [[round(a * 1000, 1) for a, _ in samples] for samples in growing],
            "fresh_ack_ms": [[round(a * 1000, 1) for a, _ in samples] for samples in fresh],
        },
    }
