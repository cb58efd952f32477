"""GET profile as fast as answered, alone: the API against its two baselines
(:mod:`api.bench.bare_asgi`) on one fresh PostgreSQL, without the rest of the live phase.

``clientele serve`` in embedded mode (no broker: its runner projects the seeded customers
into the PostgreSQL read models), the ``bare`` and ``fastapi`` baselines beside it under the
same server settings; the bytes are compared on 50 customers, then each server gets wrk's
closed loop in turn, ``repeats`` times (:func:`throughput`: rates, the ratio
API ÷ bare, and each server process's CPU per request). The same figures as the live phase's
``read_throughput``, on a box not also busy with that phase's relay and consumer.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psutil
import psycopg

from api.bench import workload
from api.bench.harness import Sizes, Stack, summary, wait_for
from api.bench.http import Pool
from api.bench.write_side import serve
from api.bench.wrk import get_load, wrk_binary
from bootstrap import build
from consumers.migrate import migrate
from infra.settings import Settings

Say = Callable[[str], None]
BASELINES = ("bare", "fastapi")  # GET profile baselines (api.bench.bare_asgi)


def run(stack: Stack, sizes: Sizes, say: Say) -> dict[str, Any]:
    """Seed ``sizes.customers`` customers, start the API and the baselines, measure."""
    wrk_binary()  # fail before setting up anything when the load generator is missing
    settings = stack.settings(stack.database("reads"))
    with build(settings) as services:
        migrate(services)
        ids = workload.seed(services.commands, sizes.customers, sizes.customers, random.Random(13))
    port, _, targets = serve_with_baselines(stack, settings)
    token = stack.api_key()
    say(f"read throughput: waiting for {len(ids):,} profiles …")
    wait_for(lambda: profiles_stored(settings.database_url) >= len(ids), 180, "profiles", every=0.2)
    for kind in BASELINES:
        asyncio.run(same_bytes(port, targets[kind][0], token, ids[:50]))
    return {"read_throughput": throughput(targets, token=token, ids=ids, sizes=sizes, say=say)}


def serve_with_baselines(
    stack: Stack, settings: Settings
) -> tuple[int, subprocess.Popen[bytes], dict[str, tuple[int, int]]]:
    """Start ``serve`` and each GET-profile baseline of :data:`BASELINES` on ``settings``:
    (the API's port, its process, ``{name: (port, pid)}`` of the API and the baselines)."""
    port, api = serve(stack, settings)
    targets = {"api": (port, api.pid)}
    for kind in BASELINES:
        baseline_port, child = serve(stack, settings, kind, "-m", "api.bench.bare_asgi", kind)
        targets[kind] = (baseline_port, child.pid)
    return port, api, targets


def profiles_stored(database_url: str) -> int:
    """How many profiles the read model holds now."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM profiles").fetchone()
    return int(row[0]) if row else 0


def profile_paths(ids: list[UUID]) -> list[str]:
    return [f"/v1/customers/{customer}" for customer in ids]


async def same_bytes(port: int, bare: int, token: str, ids: list[UUID]) -> None:
    """The bare ASGI app answers GET profile with the API's bytes, or RuntimeError."""
    async with Pool(port, token, 1) as api, Pool(bare, token, 1) as baseline:
        for path in profile_paths(ids):
            ours, theirs = await api.request("GET", path), await baseline.request("GET", path)
            if ours != theirs:
                raise RuntimeError(f"bare ASGI baseline differs on {path}: {ours!r} {theirs!r}")


def throughput(
    targets: dict[str, tuple[int, int]], *, token: str, ids: list[UUID], sizes: Sizes, say: Say
) -> dict[str, Any]:
    """GET profile as fast as answered, ``read_concurrency`` connections, on each of
    ``targets`` (name → (port, pid): the API, then the baselines) in turn, ``repeats`` times;
    medians, the CPU of each server process per request, and the ratio API ÷ bare."""
    paths = profile_paths(ids)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    for repeat in range(sizes.repeats):
        for name, (port, pid) in targets.items():
            process = psutil.Process(pid)
            cpu = sum(process.cpu_times()[:2])
            loaded = get_load(
                port,
                token,
                paths,
                seconds=sizes.throughput_seconds,
                connections=sizes.read_concurrency,
            )
            cpu = sum(process.cpu_times()[:2]) - cpu
            loaded["cpu_us_per_request"] = 1e6 * cpu / max(1, loaded["latency_ms"]["n"])
            runs[name].append(loaded)
        say(
            f"GET profile {repeat + 1}/{sizes.repeats}: "
            + ", ".join(f"{name} {r[-1]['requests_per_s']:,.0f}/s" for name, r in runs.items())
        )
    ratios = [
        ours["requests_per_s"] / bare["requests_per_s"]
        for ours, bare in zip(runs["api"], runs["bare"], strict=True)
    ]

    def medians(name: str) -> dict[str, Any]:
        rates = summary([r["requests_per_s"] for r in runs[name]])
        return {
            "requests_per_s": rates["median"],
            "cpu_us_per_request": summary([r["cpu_us_per_request"] for r in runs[name]])["median"],
            "p99_ms": summary([r["latency_ms"]["p99"] for r in runs[name]])["median"],
            "failures": sum(r["failures"] for r in runs[name]),
            "repeats": {"requests_per_s": rates},
        }

    ours, bare = medians("api"), medians("bare")
    return {
        **ours,
        "baseline_requests_per_s": bare["requests_per_s"],
        "ratio": summary(ratios)["median"],
        "target_ratio": 0.5,
        "connections": sizes.read_concurrency,
        "generator": "wrk",
        "baselines": {name: medians(name) for name in BASELINES},
        "ratios": summary(ratios),
    }
