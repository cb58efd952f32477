"""Duplicate detection over a whole base: a full ``duplicates scan`` and an incremental one.

The base is :func:`api.bench.people.generate` (common names, households, 1 % planted
duplicates of every kind); its registrations are fed to the duplicates read model through the
projector framework, as a feed applies them (the write side's own speed is the ``ingest``
group's). Then, measured: a full scan (read the live records,
estimate the model, block, compare, keep the candidates) with its wall time and the peak
resident memory of the process while it ran (sampled every 20 ms), the precision and recall of
what it kept at the default threshold, and an incremental scan after 1 % more registrations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psutil

from api.bench.harness import Sizes, Stack
from api.bench.people import Base, generate
from domain.duplicates.model import DEFAULT_THRESHOLD
from infra.envelope import Envelope
from infra.readstore import ReadStore, open_read_store
from projections import duplicate_candidates
from projections.duplicates import DuplicatesProjector
from projections.framework import Binding, ensure_schema, project

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


def _registered(base: Base, ids: list[str], first_position: int) -> list[Envelope]:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Envelope(
            type="customer.registered",
            schema_version=1,
            customer_id=UUID(cid),
            version=1,
            position=first_position + n,
            occurred_at=at,
            recorded_at=at,
            actor="bench",
            correlation_id="bench",
            causation_id=None,
            data={**base.profiles[cid], "source": "bench", "lifecycle_stage": "prospect"},
        )
        for n, cid in enumerate(ids)
    ]


def _feed(read_store: ReadStore, envelopes: list[Envelope]) -> float:
    """Apply ``envelopes`` to the duplicates read model as its feed would; registrations/s."""
    binding = Binding.live(DuplicatesProjector())
    started = time.perf_counter()
    for start in range(0, len(envelopes), 2000):
        with read_store.transaction() as tx:
            project(tx, [binding], envelopes[start : start + 2000])
    return len(envelopes) / (time.perf_counter() - started)


def run(stack: Stack, sizes: Sizes, say: Say) -> dict[str, Any]:
    total = sizes.duplicate_customers
    planted = total // 100
    extra = total // 100
    base = generate(people=total - planted + extra, duplicates=planted, seed=7)
    ids = list(base.profiles)
    late = set(ids[total - planted : total - planted + extra])  # people, none planted
    first = [cid for cid in ids if cid not in late]
    read_store = open_read_store(stack.database("duplicates"))
    try:
        ensure_schema(read_store, [DuplicatesProjector()])
        say(f"duplicates: feeding {len(first):,} registrations to the read model …")
        fed_per_s = _feed(read_store, _registered(base, first, 1))
        say("duplicates: full scan …")
        with peak_rss() as memory:
            started = time.perf_counter()
            full = duplicate_candidates.scan(read_store, full=True)
            seconds = time.perf_counter() - started
        found = _found(read_store)
        truth = {pair for pair in base.duplicates if pair <= set(first)}
        hits = len(found & truth)
        _feed(read_store, _registered(base, sorted(late), len(first) + 1))
        started = time.perf_counter()
        incremental = duplicate_candidates.scan(read_store)
        incremental_seconds = time.perf_counter() - started
    finally:
        read_store.close()
    return {
        "customers": full.customers,
        "planted": len(truth),
        "read_model_registrations_per_s": round(fed_per_s),
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


def _found(read_store: ReadStore) -> set[frozenset[str]]:
    found: set[frozenset[str]] = set()
    cursor = None
    while True:
        items, cursor = duplicate_candidates.list_candidates(
            read_store, DEFAULT_THRESHOLD, 1000, cursor
        )
        found.update(frozenset(item["customer_ids"]) for item in items)
        if cursor is None:
            return found
