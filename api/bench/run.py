"""Runs the scenarios, each group on its own fresh services, into one JSON-ready report."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from api.bench import (
    analytics,
    campaigns,
    cli_start,
    duplicates,
    fold,
    growth,
    imports,
    live,
    policies,
    read_side,
    read_throughput,
    workload,
    write_side,
)
from api.bench.harness import Sizes, kept, machine, throwaway
from bootstrap import build
from consumers.migrate import migrate
from infra.logging import exception_text

log = structlog.get_logger(__name__)
Say = Callable[[str], None]

QUICK = Sizes(
    repeats=1,
    customers=300,
    ingest_commands=3_000,
    naive_commands=200,
    http_writes=300,
    http_concurrency=8,
    relay_events=4_000,
    rebuild_events=10_000,
    e2e_seconds=4.0,
    e2e_per_s=1_000,
    e2e_low_per_s=250,
    reads_seconds=4.0,
    reads_per_s=500,
    read_concurrency=16,
    throughput_seconds=2.0,
    travel_events=1_000,
    travel_requests=20,
    growth_batches=7,
    growth_batch_size=200,
    import_customers=500,
    import_purchases=2_500,
    analytics_customers=1_000,
    analytics_requests=60,
    policy_customers=500,
    policy_lag_samples=10,
    campaign_customers=300,
    duplicate_customers=5_000,
    fold_events=4_000,
)
FULL = Sizes(
    repeats=3,
    customers=5_000,
    ingest_commands=30_000,
    naive_commands=2_000,
    http_writes=3_000,
    http_concurrency=8,
    relay_events=100_000,
    rebuild_events=1_000_000,
    e2e_seconds=30.0,
    e2e_per_s=1_000,
    e2e_low_per_s=250,
    reads_seconds=20.0,
    reads_per_s=500,
    read_concurrency=16,
    throughput_seconds=8.0,
    travel_events=1_000,
    travel_requests=200,
    growth_batches=7,
    growth_batch_size=1_000,
    import_customers=20_000,
    import_purchases=100_000,
    analytics_customers=25_000,
    analytics_requests=400,
    policy_customers=50_000,
    policy_lag_samples=200,
    campaign_customers=100_000,
    duplicate_customers=100_000,
)
GROUPS = (
    "ingest",
    "import",
    "relay",
    "rebuild",
    "live",
    "growth",
    "cli",
    "analytics",
    "policies",
    "campaigns",
    "duplicates",
)
ON_REQUEST = ("read_throughput", "fold")
"""Groups run only when named by ``--only`` (``read_throughput`` is also part of ``live``;
``fold`` measures each read model's CPU per event, for work on them)."""


def _ingest(sizes: Sizes, say: Say) -> dict[str, Any]:
    # durable: fsync on, so "durable events" means what it says (COPY pays the same)
    with throwaway(broker=True, durable=True) as stack:
        return {"ingest": write_side.ingest(stack, sizes, say)}


def _import(sizes: Sizes, say: Say) -> dict[str, Any]:
    with throwaway(durable=True) as stack:  # fsync on, as ingest
        return {"import": imports.run(stack, sizes, say)}


def _relay(sizes: Sizes, say: Say) -> dict[str, Any]:
    with (
        throwaway(broker=True) as stack,
        build(stack.settings(stack.database("relay"))) as services,
    ):
        migrate(services)
        say(f"relay: writing {sizes.relay_events:,} events …")
        workload.seed(services.commands, sizes.customers, sizes.relay_events, random.Random(9))
        relayed, topic = write_side.relay(stack, services, sizes, say)
        projected = read_side.projections(
            stack, services, topic, relayed["events"], sizes=sizes, say=say
        )
    return {"relay": relayed, "projections": projected}


def _rebuild(sizes: Sizes, say: Say, store: Path | None = None) -> dict[str, Any]:
    if store is None:
        with throwaway() as stack:
            return {"rebuild": read_side.rebuild(stack, sizes, say)}
    with kept(store) as stack:
        return {"rebuild": read_side.rebuild(stack, sizes, say, kept=True)}


def _live(sizes: Sizes, say: Say) -> dict[str, Any]:
    with throwaway(broker=True) as stack:
        return live.run(stack, sizes, say)


def _read_throughput(sizes: Sizes, say: Say) -> dict[str, Any]:
    with throwaway() as stack:
        return read_throughput.run(stack, sizes, say)


def _fold(sizes: Sizes, say: Say) -> dict[str, Any]:
    with throwaway() as stack:
        return {"fold": fold.run(stack, sizes, say)}


def _growth(sizes: Sizes, say: Say) -> dict[str, Any]:
    with throwaway(broker=True) as stack:
        return growth.run(stack, sizes, say)


def _analytics(sizes: Sizes, say: Say) -> dict[str, Any]:
    with throwaway() as stack:
        return {"analytics": analytics.run(stack, sizes, say)}


def _policies(sizes: Sizes, say: Say) -> dict[str, Any]:
    with throwaway() as stack:
        return policies.run(stack, sizes, say)


def _campaigns(sizes: Sizes, say: Say) -> dict[str, Any]:
    with throwaway() as stack:
        return {"campaign_launch": campaigns.run(stack, sizes, say)}


def _duplicates(sizes: Sizes, say: Say) -> dict[str, Any]:
    with throwaway() as stack:
        return {"duplicates": duplicates.run(stack, sizes, say)}


RUNNERS: dict[str, Callable[[Sizes, Say], dict[str, Any]]] = {
    "ingest": _ingest,
    "import": _import,
    "relay": _relay,
    "rebuild": _rebuild,
    "live": _live,
    "read_throughput": _read_throughput,
    "fold": _fold,
    "growth": _growth,
    "cli": cli_start.run,
    "analytics": _analytics,
    "policies": _policies,
    "campaigns": _campaigns,
    "duplicates": _duplicates,
}


def run(
    *,
    quick: bool,
    groups: tuple[str, ...] = GROUPS,
    say: Say,
    rebuild_store: Path | None = None,
) -> dict[str, Any]:
    """Every requested scenario group; a failing group is reported and the others still run.

    ``rebuild_store``: a directory that keeps the rebuild scenario's seeded cluster between
    runs (seeding 1M events takes most of an hour; the rebuild alone is timed either way)."""
    sizes = QUICK if quick else FULL
    started = time.perf_counter()
    report: dict[str, Any] = {
        "quick": quick,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "sizes": asdict(sizes),
        "scenarios": {},
        "errors": {},
    }
    for group in groups:
        say(f"— {group} —")
        group_started = time.perf_counter()
        try:
            if group == "rebuild":
                report["scenarios"] |= _rebuild(sizes, say, rebuild_store)
            else:
                report["scenarios"] |= RUNNERS[group](sizes, say)
        except Exception as error:
            log.error("bench.scenario_failed", group=group, exception=exception_text(error))
            report["errors"][group] = repr(error)
        say(f"{group} took {time.perf_counter() - group_started:.0f}s")
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report
