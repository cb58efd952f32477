"""Full mode's long-running processes: ``relay`` (and ``relay redrive``), ``consume`` and
``ingest``. Each is built by :mod:`bootstrap.processes`; a command only says what it runs and
stops it on SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer
from rich.console import Console

from api.cli.support import fail, full_mode

if TYPE_CHECKING:
    from bootstrap import Services
    from bootstrap.processes import Process

console = Console(stderr=True)
BuildProcess = Callable[["Services"], AbstractContextManager["Process"]]


def run_process(build_process: BuildProcess, *, needs_kafka: bool = True) -> None:
    """Build the process (of full mode, unless told it runs in both), say what it does, run it
    until SIGTERM or Ctrl-C.

    Started while PostgreSQL or the broker is away, it waits for them (a transient error,
    :mod:`infra.resilience`); any other error while starting (a bad setting) ends it, and a
    topic with another partition count than configured ends it with exit 2, saying which."""
    from bootstrap import build
    from infra.kafka import PartitionCountMismatch
    from infra.resilience import Stopped, Supervisor

    if needs_kafka:
        full_mode()
    stopping = threading.Event()
    running: list[Process] = []

    def stop(*_: object) -> None:
        stopping.set()
        for process in running:
            process.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)

    def start() -> tuple[ExitStack, Process]:
        with ExitStack() as stack:
            services = stack.enter_context(build())
            process = stack.enter_context(build_process(services))
            return stack.pop_all(), process

    try:
        opened, process = Supervisor("start-up", stopping, only_transient=True).call(start)
        with opened:
            running.append(process)
            if stopping.is_set():
                return
            console.print(process.summary)
            process.run()
    except Stopped:
        return
    except PartitionCountMismatch as error:  # at start, or found by a running process
        raise fail(str(error), 2) from None


relay_app = typer.Typer()  # help: the callback's docstring


@relay_app.callback(invoke_without_command=True)
def relay(context: typer.Context) -> None:
    """Publish stored events to customer.events (at-least-once, per-customer order).

    A customer whose envelope cannot be published (larger than
    CLIENTELE_KAFKA_MAX_MESSAGE_BYTES) is parked; the others flow. See `relay redrive`.

    Example: clientele relay
    """
    if context.invoked_subcommand is not None:
        return
    from bootstrap import processes

    run_process(processes.relay)


@relay_app.command("redrive")
def relay_redrive(
    customer: Annotated[UUID | None, typer.Option(help="Only this parked customer.")] = None,
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for the relay.")] = 30.0,
) -> None:
    """Retry parked customers now: the running relay publishes their held events in order.

    A limit too low stays too low: raise CLIENTELE_KAFKA_MAX_MESSAGE_BYTES and restart the
    relay (it retries every parked customer at start). Exit code 1 while one is still parked.

    Example: clientele relay redrive --customer 3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e
    """
    from rich.table import Table

    from consumers.relay_tables import ensure_relay_tables, parking_lot, wake_relay
    from infra.readstore import open_read_store
    from infra.settings import STORE_NOTICE

    settings, _ = full_mode()
    STORE_NOTICE(settings)
    wanted = None if customer is None else str(customer)
    lot = parking_lot()
    checkpoints = open_read_store(settings.database_url, pool_size=1)
    try:
        ensure_relay_tables(checkpoints)
        with checkpoints.transaction() as tx:
            before = {p.customer_id: p for p in lot.listing(tx, customer_id=wanted)}
            lot.retry_now(tx, wanted)
        wake_relay(settings.database_url)
        deadline = time.monotonic() + wait
        while True:
            with checkpoints.transaction() as tx:
                now = {p.customer_id: p for p in lot.listing(tx, customer_id=wanted)}
            waiting = [c for c in before if c in now and now[c].attempts <= before[c].attempts]
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    finally:
        checkpoints.close()
    table = Table("customer", "held at", "outcome")
    for key, was in before.items():
        if key not in now:
            verdict = "published; flows again"
        elif key in waiting:
            verdict = "not retried yet: is `clientele relay` running?"
        else:
            verdict = f"still parked: {now[key].reason}"
        table.add_row(key, f"v{was.version} @ {was.position} ({was.size} bytes)", verdict)
    Console().print(table if before else "no parked customers")
    if any(key in now for key in before):
        raise typer.Exit(1)


def consume(
    projection: Annotated[
        str | None, typer.Option(help="Only this read model (own consumer group).")
    ] = None,
) -> None:
    """Feed read models: from customer.events, and (segments) from the store's log in global
    order; run more processes to scale out.

    Example: clientele consume --projection profiles
    """
    from functools import partial

    from bootstrap import processes

    run_process(partial(processes.projection_consumer, projection=projection))


def ingest() -> None:
    """Execute commands from customer.commands; outcomes go to customer.command-results.

    Example: clientele ingest
    """
    from bootstrap import processes

    run_process(processes.command_ingest)
