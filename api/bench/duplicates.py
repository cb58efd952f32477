"""Duplicate detection over a whole base: a full ``duplicates scan`` and an incremental one.

The base is :func:`api.bench.people.generate` (common names, households, 1 % planted
duplicates of every kind), registered through the write side's group commit; the duplicates
read model is caught up by a rebuild. Then, measured: a full scan (read the live records,
estimate the model, block, compare, keep the candidates) with its wall time and the peak
resident memory of the process while it ran (sampled every 20 ms), the precision and recall of
what it kept at the default threshold, and an incremental scan after 1 % more registrations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psutil

from api.bench import workload
from api.bench.harness import Sizes, Stack
from api.bench.people import Base, generate
from bootstrap import build
from commands import messages as m
from consumers.migrate import migrate
from consumers.rebuild import rebuild_all, worker_count
from domain.duplicates.model import DEFAULT_THRESHOLD
from projections import duplicate_candidates
from projections.registry import by_name

Say = Callable[[str], None]
MB = 2**20


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Yields a dict that holds, once the block ends, ``before_mb`` and ``peak_mb`` (resident
    memory of this process before and at most during the block)."""
    process = psutil.Process()
    seen = {"before_mb": process.memory_info().rss / MB, "peak_mb": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            seen["peak_mb"] = max(seen["peak_mb"], process.memory_info().rss / MB)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        done.set()
        sampler.join()
        seen["peak_mb"] = max(seen["peak_mb"], process.memory_info().rss / MB)


def _registrations(base: Base, ids: list[str]) -> list[m.Command]:
    return [
        m.RegisterCustomer(customer_id=UUID(cid), source="bench", **base.profiles[cid])
        for cid in ids
    ]


def run(stack: Stack, sizes: Sizes, say: Say) -> dict[str, Any]:
    total = sizes.duplicate_customers
    planted = total // 100
    extra = total // 100
    base = generate(people=total - planted + extra, duplicates=planted, seed=7)
    ids = list(base.profiles)
    late = set(ids[total - planted : total - planted + extra])  # people, none planted
    first = [cid for cid in ids if cid not in late]
    with build(stack.settings(stack.database("duplicates"))) as services:
        migrate(services)
        if services.runner is not None:
            services.runner.stop()
        say(f"duplicates: registering {len(first):,} customers …")
        accepted = workload.run_batches(services.commands, _registrations(base, first))
        workers = worker_count(services.settings.rebuild_workers)
        projector = [by_name("duplicates")]
        rebuild_all(services.feed, services.read_store, projector, workers=workers)
        say("duplicates: full scan …")
        with peak_rss() as memory:
            started = time.perf_counter()
            full = duplicate_candidates.scan(services.read_store, full=True)
            seconds = time.perf_counter() - started
        found = _found(services.read_store)
        truth = {pair for pair in base.duplicates if pair <= set(first)}
        hits = len(found & truth)
        workload.run_batches(services.commands, _registrations(base, sorted(late)))
        rebuild_all(services.feed, services.read_store, projector, workers=workers)
        started = time.perf_counter()
        incremental = duplicate_candidates.scan(services.read_store)
        incremental_seconds = time.perf_counter() - started
    return {
        "customers": full.customers,
        "registered": accepted,
        "planted": len(truth),
        "seconds": round(seconds, 2),
        "customers_per_s": round(full.customers / seconds),
        "rss_before_mb": round(memory["before_mb"], 1),
        "rss_peak_mb": round(memory["peak_mb"], 1),
        "rss_growth_mb": round(memory["peak_mb"] - memory["before_mb"], 1),
        "candidates": full.candidates,
        "precision": round(hits / len(found), 4) if found else None,
        "recall": round(hits / len(truth), 4) if truth else None,
        "incremental_changed": incremental.compared,
        "incremental_seconds": round(incremental_seconds, 2),
    }


def _found(read_store: Any) -> set[frozenset[str]]:
    found: set[frozenset[str]] = set()
    cursor = None
    while True:
        items, cursor = duplicate_candidates.list_candidates(
            read_store, DEFAULT_THRESHOLD, 1000, cursor
        )
        found.update(frozenset(item["customer_ids"]) for item in items)
        if cursor is None:
            return found
