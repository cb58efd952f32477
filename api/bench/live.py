"""The live stack: ``serve``, ``relay`` and ``consume`` processes on fresh PostgreSQL + tansu.

Measures end-to-end lag at a fixed offered load, GET latencies, time travel, and the RSS of the
API and consumer processes over the whole run. GET profile load comes from wrk
(:mod:`api.bench.wrk`): at a fixed rate for the latency target, then as fast as answered
against a bare ASGI app (:mod:`api.bench.bare_asgi`) that reads the same row and sends the
same bytes under the same server settings, alternating, for the throughput ratio.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import psutil
import psycopg

from api.bench import lag_stages, workload
from api.bench.harness import RssSampler, Sizes, Stack, rss_mb, summary, wait_for
from api.bench.http import Pool, closed_loop, open_loop
from api.bench.read_throughput import (
    BASELINES,
    profile_paths,
    profiles_stored,
    same_bytes,
    serve_with_baselines,
    throughput,
)
from api.bench.wrk import get_load, wrk_binary
from bootstrap import build
from commands.service import Context
from consumers.migrate import migrate
from infra.settings import Settings

Say = Callable[[str], None]
PER_REQUEST = 10  # commands per POST /v1/commands:batch in the lag scenario
SEGMENT = "bench-t1"
POLL_S = 0.002  # how often the lag watcher looks (its resolution)


@dataclass
class Visibility:
    """Watches the profiles read model until each acknowledged (customer, version) shows."""

    database_url: str
    pending: list[tuple[str, int, float, float]] = field(default_factory=list)  # + wall clock
    lags: list[float] = field(default_factory=list)
    shown: list[lag_stages.Shown] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def acknowledged(self, at: float, status: int, body: bytes) -> None:
        if status >= 400:
            return
        results, wall = orjson.loads(body)["results"], time.time() - (time.perf_counter() - at)
        with self.lock:
            self.pending += [
                (r["customer_id"], r["version"], at, wall)
                for r in results
                if r["status"] == "accepted"
            ]

    def watch(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self.stopping.is_set():
                time.sleep(POLL_S)  # don't steal the CPU the measured processes share
                with self.lock:
                    waiting = list(self.pending)
                if not waiting:
                    continue
                rows = conn.execute(
                    "SELECT customer_id, version FROM profiles WHERE customer_id = ANY(%s)",
                    (sorted({w[0] for w in waiting}),),
                ).fetchall()
                seen: dict[str, int] = dict(rows)
                now, wall = time.perf_counter(), time.time()
                shown = [w for w in waiting if seen.get(w[0], 0) >= w[1]]
                with self.lock:
                    self.lags += [now - w[2] for w in shown]
                    self.shown += [(str(c), v, ack, wall) for c, v, _, ack in shown]
                    done = set(shown)
                    self.pending = [w for w in self.pending if w not in done]


def run(stack: Stack, sizes: Sizes, say: Say) -> dict[str, Any]:
    """Start the processes, then e2e lag, reads, time travel; RSS sampled throughout."""
    wrk_binary()  # fail before setting up anything when the load generator is missing
    settings = stack.settings(stack.database("live"), "live.")
    stack.topics("live.", 12)
    rng = random.Random(13)
    with build(settings) as services:
        migrate(services)
        ids = workload.seed(services.commands, sizes.customers, sizes.customers, rng)
        traveller = ids[0]
        travel = workload.contacts(traveller, sizes.travel_events - 1)
        workload.run_batches(services.commands, travel)
        rule = {"field": "tags", "op": "contains", "value": "t1"}
        services.segments.define(SEGMENT, "Tagged t1", rule, None, Context(actor="bench"))
    relay = stack.spawn(settings, "relay", "relay")
    consumer = stack.spawn(settings, "consume", "consume")
    port, api, targets = serve_with_baselines(stack, settings)
    token = stack.api_key()
    say("live: waiting for the consumer to join its group and catch up …")

    def caught_up() -> bool:
        for name, child in (("relay", relay), ("consume", consumer)):
            if child.poll() is not None:
                raise RuntimeError(f"clientele {name} exited:\n{stack.log_tail(name)}")
        return profiles_stored(settings.database_url) >= len(ids)

    wait_for(caught_up, 180, "consumer catch-up", every=0.2)
    # Every path once at full rate first, and a write to every customer: RSS growth is then
    # about leaks, not about the thread pool, the writer's per-customer cache
    # (CLIENTELE_AGGREGATE_CACHE_MB) and allocator arenas filling on first use. What the
    # warm-up adds is measured and reported apart (memory.warm_up).
    watched = {"api": api.pid, "consumer": consumer.pid, "relay": relay.pid}
    unwarmed = rss_mb(watched)
    asyncio.run(_warm_up(port=port, token=token, ids=ids, sizes=sizes))
    warmed = rss_mb(watched)
    for kind in BASELINES:
        asyncio.run(same_bytes(port, targets[kind][0], token, ids[:50]))
    sampler = RssSampler(watched)
    sampler.start()
    try:
        result = asyncio.run(
            _measure(
                settings,
                port=port,
                token=token,
                ids=ids,
                sizes=sizes,
                say=say,
            )
        )
    finally:
        sampler.stop()
    result["read_throughput"] = throughput(targets, token=token, ids=ids, sizes=sizes, say=say)
    memory = sampler.report()
    memory["target_growth_pct"] = 10.0
    memory["warm_up"] = {
        name: {
            "before_mb": unwarmed[name],
            "after_mb": warmed[name],
            "growth_pct": round(100 * (warmed[name] - unwarmed[name]) / unwarmed[name], 2),
        }
        for name in watched
    }
    result["memory"] = memory
    say(
        f"memory: peak {memory['peak_rss_mb']:.0f} MB, growth {memory['growth_pct']:.1f} % "
        f"(the API's warm-up before it: {memory['warm_up']['api']['growth_pct']:+.1f} %)"
    )
    return result


async def _measure(
    settings: Settings, *, port: int, token: str, ids: list[UUID], sizes: Sizes, say: Say
) -> dict[str, Any]:
    rng = random.Random(17)
    async with Pool(port, token, sizes.read_concurrency) as pool:
        low = await _e2e(pool, settings, ids, per_s=sizes.e2e_low_per_s, sizes=sizes, rng=rng)
        say(f"e2e lag at {low['offered_per_s']}/s: p99 {low['p99_ms']:.1f} ms")
        e2e = await _e2e(pool, settings, ids, per_s=sizes.e2e_per_s, sizes=sizes, rng=rng)
        e2e["lower_load"] = low
        say(
            f"e2e lag at {e2e['offered_per_s']}/s: p50 {e2e['p50_ms']:.1f} ms, p99 {e2e['p99_ms']:.1f} ms"
        )
    # wrk's own connections, while this pool's would sit idle past the server's keep-alive
    reads = await _reads(ids, sizes, rng, port=port, token=token)
    say(
        f"reads at {sizes.reads_per_s}/s: p50 {reads['p50_ms']:.1f} ms, p99 {reads['p99_ms']:.1f} ms"
    )
    async with Pool(port, token, 1) as pool:
        travel = await _time_travel(pool, ids[0], sizes)
    say(f"time travel ({sizes.travel_events} events): p99 {travel['p99_ms']:.1f} ms")
    return {"e2e_lag": e2e, "reads": reads, "time_travel": travel}


def _write(ids: list[UUID], rng: random.Random) -> tuple[str, str, bytes]:
    """``POST /v1/commands:batch`` with ``PER_REQUEST`` everyday commands."""
    commands = [
        workload.as_json(workload.everyday(rng.choice(ids), rng)) for _ in range(PER_REQUEST)
    ]
    return "POST", "/v1/commands:batch", orjson.dumps({"commands": commands})


async def _warm_up(*, port: int, token: str, ids: list[UUID], sizes: Sizes) -> None:
    """Writes at the e2e rate, one to each customer, then reads and time travel, briefly;
    unmeasured, but the RSS it adds is reported (``run``)."""
    rng = random.Random(19)
    seconds = max(1.0, sizes.e2e_seconds / 10)
    each = rng.sample(ids, len(ids))

    def every_customer() -> tuple[str, str, bytes]:
        if not each:
            return _write(ids, rng)
        batch = [each.pop() for _ in range(min(PER_REQUEST, len(each)))]
        commands = [workload.as_json(workload.everyday(c, rng)) for c in batch]
        return "POST", "/v1/commands:batch", orjson.dumps({"commands": commands})

    per_s = sizes.e2e_per_s / PER_REQUEST
    async with Pool(port, token, sizes.read_concurrency) as pool:
        await open_loop(pool, every_customer, per_s, len(ids) / PER_REQUEST / per_s)
        await open_loop(pool, lambda: _write(ids, rng), per_s, seconds)
        await open_loop(
            pool,
            lambda: ("GET", f"/v1/customers/{rng.choice(ids)}", b""),
            sizes.reads_per_s,
            seconds,
        )
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await closed_loop(pool, lambda: ("GET", f"/v1/customers/{ids[0]}?as_of={now}", b""), 5, 1)


async def _e2e(
    pool: Pool,
    settings: Settings,
    ids: list[UUID],
    *,
    per_s: int,
    sizes: Sizes,
    rng: random.Random,
) -> dict[str, Any]:
    """Commands at a fixed rate (batches of ``PER_REQUEST``); lag = ack → visible in profiles,
    split at the broker (:mod:`api.bench.lag_stages`)."""
    mark = lag_stages.Mark.now(settings)
    watcher = Visibility(settings.database_url)
    thread = threading.Thread(target=watcher.watch, name="visibility", daemon=True)
    thread.start()

    try:
        psutil.cpu_percent(None)  # starts the busy-time window of the whole box
        acks, failures, achieved = await open_loop(
            pool,
            lambda: _write(ids, rng),
            per_s / PER_REQUEST,
            sizes.e2e_seconds,
            watcher.acknowledged,
        )
        busy = psutil.cpu_percent(None)  # both cores, every process, during the load
        await asyncio.to_thread(wait_for, lambda: not watcher.pending, 60, "e2e visibility")
    finally:
        watcher.stopping.set()
        thread.join(5)
    lag = summary([x * 1000 for x in watcher.lags])
    ack = summary([x * 1000 for x in acks])
    stages = await asyncio.to_thread(mark.split, watcher.shown)
    return {
        "offered_per_s": per_s,
        "achieved_per_s": achieved * PER_REQUEST,
        "commands_per_request": PER_REQUEST,
        "p50_ms": lag["p50"],
        "p99_ms": lag["p99"],
        "lag_ms": lag,
        "ack_ms": ack,
        "failed_requests": failures,
        "cpu_busy_pct": busy,
        "stages": stages,
        "target_p99_ms": 100.0,
    }


async def _reads(
    ids: list[UUID], sizes: Sizes, rng: random.Random, *, port: int, token: str
) -> dict[str, Any]:
    """GET profile at a fixed rate (wrk); then segment-member pages at fixed concurrency."""
    loaded = await asyncio.to_thread(
        get_load,
        port,
        token,
        profile_paths(ids),
        seconds=sizes.reads_seconds,
        connections=sizes.read_concurrency,
        rate=sizes.reads_per_s,
    )
    result, failures, achieved = loaded["latency_ms"], loaded["failures"], loaded["requests_per_s"]
    async with Pool(port, token, sizes.read_concurrency) as pool:
        cursors = [""]
        while len(cursors) < 20:
            status, body = await pool.request(
                "GET", f"/v1/segments/{SEGMENT}/members?limit=50&cursor={cursors[-1]}"
            )
            following = orjson.loads(body).get("next_cursor") if status == 200 else None
            if not following:
                break
            cursors.append(following)

        def page() -> tuple[str, str, bytes]:
            return (
                "GET",
                f"/v1/segments/{SEGMENT}/members?limit=50&cursor={rng.choice(cursors)}",
                b"",
            )

        pages, seconds, page_failures = await closed_loop(
            pool, page, int(sizes.reads_per_s * sizes.reads_seconds / 2), sizes.read_concurrency
        )
    paged = summary([x * 1000 for x in pages])
    return {
        "offered_per_s": sizes.reads_per_s,
        "achieved_per_s": achieved,
        "p50_ms": result["p50"],
        "p99_ms": result["p99"],
        "latency_ms": result,
        "failures": failures,
        "generator": "wrk",
        "target_p99_ms": 10.0,
        "segment_pages": {
            "concurrency": sizes.read_concurrency,
            "pages_per_s": len(pages) / seconds,
            "p50_ms": paged["p50"],
            "p99_ms": paged["p99"],
            "latency_ms": paged,
            "failures": page_failures,
        },
    }


async def _time_travel(pool: Pool, customer: UUID, sizes: Sizes) -> dict[str, Any]:
    """``GET /v1/customers/{id}?as_of=now`` folds every one of the customer's events."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = f"/v1/customers/{customer}?as_of={now}"
    status, body = await pool.request("GET", path)
    if status != 200:
        raise RuntimeError(f"time travel answered {status}: {body[:300]!r}")
    latencies, _, failures = await closed_loop(
        pool, lambda: ("GET", path, b""), sizes.travel_requests, 1
    )
    result = summary([x * 1000 for x in latencies])
    return {
        "events": orjson.loads(body)["version"],
        "p50_ms": result["p50"],
        "p99_ms": result["p99"],
        "latency_ms": result,
        "failures": failures,
        "target_p99_ms": 20.0,
    }
