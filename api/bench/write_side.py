"""Write-side scenarios: ingest (batch vs raw COPY vs naive, HTTP writes) and the relay."""

from __future__ import annotations

import asyncio
import http.client
import os
import random
import subprocess
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
from kafka.partitioner import DefaultPartitioner
from psycopg import sql

from api.bench import plain_save, workload, writers
from api.bench.harness import Sizes, Stack, summary, wait_for
from api.bench.http import Pool, closed_loop
from bootstrap import Services, build
from bootstrap.processes import relay_publisher
from consumers.migrate import migrate
from infra import kafka
from infra.local_services import free_port, port_open
from infra.runtime import settled_heap
from infra.settings import Settings

Say = Callable[[str], None]
Message = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers
WRITERS = 2  # writer processes routed by customer: one per core of the reference box


def _services(stack: Stack, prefix: str, topic_prefix: str = "") -> Services:
    services = build(stack.settings(stack.database(prefix), topic_prefix))
    migrate(services)
    return services


def raw_copy(database_url: str, table: str, rows: int, state_bytes: int, topic: str) -> float:
    """Seconds to COPY ``rows`` rows shaped like stored events into a table like ``table``."""
    payload = os.urandom(max(1, state_bytes))
    copy_table = sql.Identifier(f"bench_copy_{time.time_ns()}")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING INDEXES)").format(
                copy_table, sql.Identifier(table)
            )
        )
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cursor:
            statement = sql.SQL(
                "COPY {} (originator_id, originator_version, topic, state, notification_id) "
                "FROM STDIN"
            ).format(copy_table)
            with cursor.copy(statement) as copy:
                for n in range(rows):
                    copy.write_row((UUID(int=n + 1, version=4), 1, topic, payload, n + 1))
        return time.perf_counter() - started


def _row_shape(services: Services) -> tuple[int, str]:
    """Average ``state`` size and a typical topic of the stored event rows."""
    with psycopg.connect(services.store.database_url) as conn:
        row = conn.execute(
            sql.SQL("SELECT AVG(octet_length(state))::int, MIN(topic) FROM {}").format(
                sql.Identifier(services.store.events_table)
            )
        ).fetchone()
    assert row is not None
    return int(row[0] or 1), str(row[1] or "")


def ingest(stack: Stack, sizes: Sizes, say: Say) -> dict[str, Any]:
    """Group commit vs raw COPY of as many equally sized rows vs one transaction per command."""
    rng = random.Random(7)
    batch, copy, naive, ratios, ceiling, plain, over_plain = [], [], [], [], [], [], []
    routed, routed_ratios, routed_cpu = [], [], []
    registering, mixing, registering_cpu = [], [], []
    rows = 0
    for repeat in range(sizes.repeats):
        warm_up = workload.registrations(workload.BATCH, rng)
        registrations = workload.registrations(sizes.customers, rng)
        ids = [c.customer_id for c in registrations if c.customer_id is not None]
        commands = workload.mix(ids, sizes.ingest_commands, rng)
        # as in a long-running writer (bootstrap.processes settles its heap once started):
        # start-up and the bench's own inputs, which no writer holds, are out of the
        # collector's sight; what the writer builds (its cached customers) is not
        with _services(stack, "ingest") as services, settled_heap():
            workload.run_batches(services.commands, warm_up)
            started, cpu = time.perf_counter(), time.process_time()
            workload.run_batches(services.commands, registrations)
            registering.append(len(registrations) / (time.perf_counter() - started))
            registering_cpu.append((time.process_time() - cpu) / len(registrations))
            head = services.store.head()
            started, cpu = time.perf_counter(), time.process_time()
            workload.run_batches(services.commands, commands)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            rows = services.store.head() - head
            mixing.append(len(commands) / seconds)
            batch.append(rows / seconds)
            # rows per second of this process's own CPU: the rate if the database answered
            # instantly — the ceiling of the Python side, whatever PostgreSQL does
            ceiling.append(rows / cpu)
            state_bytes, topic = _row_shape(services)
            store = services.store
            copy.append(
                rows / raw_copy(store.database_url, store.events_table, rows, state_bytes, topic)
            )
            ratios.append(batch[-1] / copy[-1])
            plain.append(rows / plain_save.batched_save(store.database_url, rows, state_bytes))
            over_plain.append(batch[-1] / plain[-1])
            # the same size of mix again, by WRITERS processes routed by customer
            head = services.store.head()
            wall, cpu = writers.routed(
                services.settings, workload.mix(ids, sizes.ingest_commands, rng), WRITERS
            )
            routed_rows = services.store.head() - head
            routed.append(routed_rows / wall)
            routed_ratios.append(routed[-1] / copy[-1])
            routed_cpu.append(cpu / routed_rows)
            singles = workload.mix(ids, sizes.naive_commands, rng)
            head = services.store.head()
            started = time.perf_counter()
            for command in singles:
                services.commands.execute(command, workload.CONTEXT)
            naive.append((services.store.head() - head) / (time.perf_counter() - started))
        say(
            f"ingest {repeat + 1}/{sizes.repeats}: {batch[-1]:,.0f} rows/s, COPY {copy[-1]:,.0f}, "
            f"eventsourcing's plain save {plain[-1]:,.0f}, {WRITERS} writers {routed[-1]:,.0f}; "
            f"registrations {registering[-1]:,.0f}/s, mix {mixing[-1]:,.0f} commands/s"
        )
    registration_ratios = [r / m for r, m in zip(registering, mixing, strict=True)]
    return {
        "events_per_s": summary(batch)["median"],
        "baseline_events_per_s": summary(copy)["median"],
        "ratio": summary(ratios)["median"],
        "target_ratio": 0.15,
        # eventsourcing's own batched save of as many plain events (no encryption, no chain)
        "plain_save_events_per_s": summary(plain)["median"],
        "plain_save_ratio": summary(over_plain)["median"],
        "plain_save_target_ratio": 2.0,
        "cpu_us_per_row": 1e6 / summary(ceiling)["median"],
        "naive_events_per_s": summary(naive)["median"],
        "cpu_ceiling_events_per_s": summary(ceiling)["median"],
        # the same mix by several writer processes, each owning its customers (id % writers)
        "writers": {
            "processes": WRITERS,
            "events_per_s": summary(routed)["median"],
            "ratio": summary(routed_ratios)["median"],
            "cpu_us_per_row": summary(routed_cpu)["median"] * 1e6,
            "repeats": {"events_per_s": summary(routed), "ratio": summary(routed_ratios)},
        },
        "rows_per_repeat": rows,
        "commands_per_repeat": sizes.ingest_commands,
        "batch_size": workload.BATCH,
        # registrations (customer, email reservation, data key) against the everyday mix, both
        # in commands per second through the batch path
        "registrations": {
            "commands_per_s": summary(registering)["median"],
            "mix_commands_per_s": summary(mixing)["median"],
            "ratio": summary(registration_ratios)["median"],
            "target_ratio": 0.5,
            "cpu_us_per_command": summary(registering_cpu)["median"] * 1e6,
            "commands_per_repeat": sizes.customers,
            "repeats": {
                "commands_per_s": summary(registering),
                "ratio": summary(registration_ratios),
            },
        },
        "repeats": {
            "events_per_s": summary(batch),
            "baseline_events_per_s": summary(copy),
            "plain_save_events_per_s": summary(plain),
            "plain_save_ratio": summary(over_plain),
            "naive_events_per_s": summary(naive),
            "cpu_ceiling_events_per_s": summary(ceiling),
        },
        "http": http_writes(stack, sizes, say),
    }


def http_writes(stack: Stack, sizes: Sizes, say: Say) -> dict[str, Any]:
    """Concurrent single-command HTTP writes (``POST …/contacts``) against ``clientele serve``."""
    with _services(stack, "http") as services:
        ids = workload.seed(services.commands, sizes.customers, sizes.customers, random.Random(3))
    settings = stack.settings(services.settings.database_url)
    server, _ = serve(stack, settings)
    token = stack.api_key()
    body = b'{"channel": "email", "direction": "inbound", "subject": "bench"}'
    rng = random.Random(5)

    def request() -> tuple[str, str, bytes]:
        return "POST", f"/v1/customers/{rng.choice(ids)}/contacts", body

    async def drive() -> tuple[list[float], float, int]:
        async with Pool(server, token, sizes.http_concurrency) as pool:
            return await closed_loop(pool, request, sizes.http_writes, sizes.http_concurrency)

    latencies, seconds, failures = asyncio.run(drive())
    result = summary([x * 1000 for x in latencies])
    say(f"http writes: {len(latencies) / seconds:,.0f} commands/s, p99 {result['p99']:.1f} ms")
    return {
        "commands_per_s": len(latencies) / seconds,
        "concurrency": sizes.http_concurrency,
        "p50_ms": result["p50"],
        "p99_ms": result["p99"],
        "latency_ms": result,
        "failures": failures,
    }


def serve(
    stack: Stack, settings: Settings, name: str = "serve", *python: str
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start ``clientele serve`` (or ``python PYTHON... PORT``) on a free port and wait until
    it is ready: (port, process)."""
    port = free_port()
    if python:
        child = stack.spawn_python(settings, name, *python, str(port))
    else:
        child = stack.spawn(settings, name, "serve", "--port", str(port))

    def ready() -> bool:
        if child.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{stack.log_tail(name)}")
        # serve listens at once and opens its services in the background: ready once
        # /readyz answers 200 (a baseline script has no /readyz: listening is ready)
        return port_open(port) and (bool(python) or _ready(port))

    wait_for(ready, 60, "clientele serve")
    return port, child


def _ready(port: int) -> bool:
    """Whether ``GET /readyz`` on ``port`` answers 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def relay(stack: Stack, services: Services, sizes: Sizes, say: Say) -> tuple[dict[str, Any], str]:
    """Relay catch-up (store → topic) vs a raw producer sending the same envelope bytes.

    Each repeat times both on fresh topics, in alternating order (relay first, then raw first,
    …); the ratio is the median of the repeats' ratios (their spread under ``repeats``). Both
    run as in a long-running process: start-up's heap (here also the baseline's messages) is
    frozen first (:func:`~infra.runtime.settled_heap`, as every process of
    :mod:`bootstrap.processes` does), so neither pays full collections over the bench's data.

    Returns the result and the topic the last repeat filled (for the projections scenario)."""
    envelopes = services.feed.read_sealed(0, 10 * sizes.relay_events + 10_000)
    messages = [(str(e.customer_id).encode(), e.to_bytes(), e.kafka_headers()) for e in envelopes]
    del envelopes
    with settled_heap():
        return _relay_repeats(stack, services, sizes, say, messages)


def _relay_repeats(
    stack: Stack, services: Services, sizes: Sizes, say: Say, messages: list[Message]
) -> tuple[dict[str, Any], str]:
    assert stack.broker is not None
    bootstrap = stack.broker.bootstrap
    rates, raw, ratios, ceiling, raw_cpu = [], [], [], [], []
    for repeat in range(sizes.repeats):
        topics = stack.topics(f"relay{repeat}.", 12)
        raw_first = repeat % 2 == 1
        if raw_first:
            raw_run = _raw_produce(bootstrap, topics.name("raw"), messages)
        published, seconds, cpu = _relay_catch_up(services, bootstrap, topics.events, repeat)
        rates.append(published / seconds)
        ceiling.append(published / cpu)
        if not raw_first:
            raw_run = _raw_produce(bootstrap, topics.name("raw"), messages)
        raw.append(len(messages) / raw_run[0])
        raw_cpu.append(raw_run[1] / len(messages))
        ratios.append(rates[-1] / raw[-1])
        say(f"relay {repeat + 1}/{sizes.repeats}: {rates[-1]:,.0f} events/s, raw {raw[-1]:,.0f}")
    result = {
        "events_per_s": summary(rates)["median"],
        "baseline_events_per_s": summary(raw)["median"],
        "ratio": summary(ratios)["median"],
        "target_ratio": 0.8,
        "cpu_ceiling_events_per_s": summary(ceiling)["median"],
        # CPU per event of this process, the producer's sender thread included: the relay's
        # (store read, envelopes, send, acks, checkpoints) and the raw producer's (send, acks)
        "cpu_us_per_event": 1e6 / summary(ceiling)["median"],
        "baseline_cpu_us_per_event": summary(raw_cpu)["median"] * 1e6,
        "events": len(messages),
        "avg_envelope_bytes": sum(len(m[1]) for m in messages) / max(1, len(messages)),
        "repeats": {
            "events_per_s": summary(rates),
            "baseline_events_per_s": summary(raw),
            "ratio": summary(ratios),
        },
    }
    return result, topics.events


def _relay_catch_up(
    services: Services, bootstrap: str, topic: str, repeat: int
) -> tuple[int, float, float]:
    """The relay's catch-up from the store's start to ``topic``: (events published, seconds,
    CPU seconds of this process)."""
    producer = kafka.producer(bootstrap)
    try:
        publisher = relay_publisher(services, producer, topic, f"bench-{repeat}")
        producer.partitions_for(topic)  # metadata, as the raw producer gets it
        started, cpu = time.perf_counter(), time.process_time()
        published = publisher.catch_up()
        return published, time.perf_counter() - started, time.process_time() - cpu
    finally:
        producer.close(timeout=10)


def _raw_produce(bootstrap: str, topic: str, messages: list[Message]) -> tuple[float, float]:
    """Seconds, and CPU seconds of this process, for a bare kafka-python producer (the relay's
    producer settings, kafka-python's own default partitioner, none of our wrapping) to send
    and get acks for ``messages``."""
    kafka.ensure_topics(bootstrap, [topic], 12)
    producer = kafka.bare_producer(bootstrap, partitioner=DefaultPartitioner())
    try:
        producer.partitions_for(topic)
        started, cpu = time.perf_counter(), time.process_time()
        futures = [producer.send(topic, key=k, value=v, headers=h) for k, v, h in messages]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        producer.close(timeout=10)
