"""Read-side scenarios without HTTP: projections from the topic, and rebuilds from the store."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from kafka import KafkaConsumer, TopicPartition
from psycopg import sql

from api.bench import workload
from api.bench.harness import Sizes, Stack, summary
from bootstrap import Services, build
from bootstrap.processes import projection_worker
from consumers.migrate import migrate
from consumers.rebuild import rebuild_all, worker_count
from infra import kafka
from infra.runtime import settled_heap
from projections.registry import all_projectors

Say = Callable[[str], None]
DEADLINE_S = 600.0


def _assigned(bootstrap: str, topic: str) -> tuple[KafkaConsumer, list[TopicPartition]]:
    """A group-less consumer assigned every partition of ``topic`` (no group join to wait for)."""
    consumer: KafkaConsumer = kafka.consumer(bootstrap, None)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    return consumer, partitions


def _raw_consume(bootstrap: str, topic: str, expected: int) -> float:
    """Seconds for a plain consumer to read ``expected`` records of ``topic`` from the start."""
    consumer, partitions = _assigned(bootstrap, topic)
    try:
        consumer.seek_to_beginning(*partitions)
        seen = 0
        started = time.perf_counter()
        while seen < expected and time.perf_counter() - started < DEADLINE_S:
            seen += sum(len(batch) for batch in consumer.poll(timeout_ms=500).values())
        return time.perf_counter() - started
    finally:
        consumer.close()


def projections(
    stack: Stack, services: Services, topic: str, expected: int, *, sizes: Sizes, say: Say
) -> dict[str, Any]:
    """Every PostgreSQL read model fed from ``topic`` vs a consumer that only reads it, each
    from a settled heap (:func:`~infra.runtime.settled_heap`), as in a long-running process."""
    assert stack.broker is not None
    bootstrap = stack.broker.bootstrap
    rates, raw, ratios, ceiling = [], [], [], []
    for repeat in range(sizes.repeats):
        settings = services.settings.model_copy(
            update={"read_database_url": stack.database("readmodels")}
        )
        with build(settings) as target:
            consumer, partitions = _assigned(bootstrap, topic)
            dlq = kafka.producer(bootstrap)
            try:
                migrate(target)
                worker = projection_worker(
                    target,
                    consumer,
                    dlq,
                    topic=topic,
                    group=f"bench-{repeat}",
                    projectors=target.projectors,
                )
                worker.seek(partitions)
                with settled_heap():  # as `clientele consume` before its loop (Process.run)
                    started, cpu = time.perf_counter(), time.process_time()
                    while worker.applied < expected and time.perf_counter() - started < DEADLINE_S:
                        worker.poll_once()
                    rates.append(worker.applied / (time.perf_counter() - started))
                    ceiling.append(worker.applied / (time.process_time() - cpu))
            finally:
                consumer.close()
                dlq.close(timeout=10)
        with settled_heap():  # the baseline starts from the same settled heap
            raw.append(expected / _raw_consume(bootstrap, topic, expected))
        ratios.append(rates[-1] / raw[-1])
        say(
            f"projections {repeat + 1}/{sizes.repeats}: {rates[-1]:,.0f} events/s, raw {raw[-1]:,.0f}"
        )
    return {
        "events_per_s": summary(rates)["median"],
        "baseline_events_per_s": summary(raw)["median"],
        "ratio": summary(ratios)["median"],
        "target_ratio": 0.3,
        "cpu_ceiling_events_per_s": summary(ceiling)["median"],
        "events": expected,
        "projectors": [p.name for p in all_projectors()],
        "repeats": {"events_per_s": summary(rates), "baseline_events_per_s": summary(raw)},
    }


def _cpu_seconds() -> float:
    """CPU time of this process and of its ended children (a rebuild's workers)."""
    usage = os.times()
    return usage.user + usage.system + usage.children_user + usage.children_system


def rebuild(stack: Stack, sizes: Sizes, say: Say, *, kept: bool = False) -> dict[str, Any]:
    """Replay the store into every projection in one pass (shadow copies, then swap).

    ``kept``: the stack's cluster outlives the run (``clientele bench --rebuild-store``); the
    store is seeded only when the cluster holds no complete store of these sizes yet."""
    customers = max(sizes.customers, sizes.rebuild_events // 20)
    if kept:
        url, seeded = _kept_store(stack, sizes.rebuild_events, customers)
    else:
        url, seeded = stack.database("rebuild"), False
    with build(stack.settings(url)) as services:
        migrate(services)
        if not seeded:
            say(f"rebuild: writing {sizes.rebuild_events:,} events …")
            workload.seed(services.commands, customers, sizes.rebuild_events, random.Random(11))
        else:
            say(f"rebuild: reusing the kept store of {sizes.rebuild_events:,} events")
        workers = worker_count(services.settings.rebuild_workers)
        with settled_heap():  # as `clientele projections rebuild` (and its workers)
            cpu = _cpu_seconds()
            results = rebuild_all(
                services.feed,
                services.read_store,
                services.projectors,
                workers=workers,
                connect=services.connect_worker,
            )
            cpu = _cpu_seconds() - cpu
    if kept and not seeded:
        _seeded_marker(stack, sizes.rebuild_events, customers).touch()
    events, seconds = results[0].events, results[0].seconds
    rate = events / seconds
    say(f"rebuild: {events:,} events into all projections at {rate:,.0f} events/s")
    return {
        "events_per_s": rate,
        "events": events,
        "seconds": seconds,
        "target_events_per_s": 25_000,
        "cpu_ceiling_events_per_s": events / cpu,
        "projections": [r.name for r in results],
        "single_pass": True,
        "workers": workers,
        "store": "reused" if seeded else ("seeded and kept" if kept else "fresh"),
    }


def _seeded_marker(stack: Stack, events: int, customers: int) -> Path:
    return stack.root / f"rebuild_{events}_{customers}.seeded"


def _kept_store(stack: Stack, events: int, customers: int) -> tuple[str, bool]:
    """The kept store's URL and whether a completed seeding filled it; an incomplete one (a
    run stopped while seeding) is dropped and created again empty."""
    name = f"rebuild_{events}_{customers}"
    if _seeded_marker(stack, events, customers).exists():
        return stack.postgres.create_database(name), True
    with psycopg.connect(stack.postgres.database_url("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    return stack.postgres.create_database(name), False
