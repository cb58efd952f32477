"""Ingest with several writer processes routed by customer (issue 16, direction 4).

Each process owns the customers whose id falls to it (``id % processes``), so a customer is
always written, and kept in the checked cache, by the same process; the processes share the
store and its table lock. A process's own command service and connections are opened before
the clock starts.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

from api.bench import workload
from bootstrap import build
from commands import messages as m
from infra.logging import for_spawned_process
from infra.runtime import settle_heap
from infra.settings import Settings


def _write(
    configure_logging: Callable[[], None],
    settings: Settings,
    commands: list[m.Command],
    start: Event,
    done: Queue[Any],
) -> None:
    """One writer process: ready, wait for the start, run its commands, report its CPU."""
    configure_logging()  # its lines go where the bench's go (stderr), never into --json
    with build(settings) as services:
        settle_heap()  # as a long-running writer, once started (bootstrap.processes)
        done.put("ready")
        start.wait(120)
        cpu = time.process_time()
        workload.run_batches(services.commands, commands)
        done.put(time.process_time() - cpu)


def routed(settings: Settings, commands: list[m.Command], processes: int) -> tuple[float, float]:
    """Run ``commands`` through ``processes`` writer processes routed by customer id:
    (wall seconds from the start to the last writer's end, CPU seconds of all writers)."""
    spawn = multiprocessing.get_context("spawn")
    start, done = spawn.Event(), spawn.Queue()
    shares: list[list[m.Command]] = [[] for _ in range(processes)]
    for command in commands:
        assert command.customer_id is not None
        shares[command.customer_id.int % processes].append(command)
    writers = [
        spawn.Process(target=_write, args=(for_spawned_process(), settings, share, start, done))
        for share in shares
    ]
    for writer in writers:
        writer.start()
    try:
        for _ in writers:
            if done.get(timeout=120) != "ready":
                raise RuntimeError("a writer process failed before it started")
        started = time.perf_counter()
        start.set()
        cpu = sum(float(done.get(timeout=1800)) for _ in writers)
        return time.perf_counter() - started, cpu
    finally:
        for writer in writers:
            writer.join(60)
            if writer.is_alive():
                writer.kill()
