"""``clientele projections``: status, catch-up, redrive, rebuild and verify of the read models."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer

from api.cli.support import console, errors, fail, progress_bar

if TYPE_CHECKING:
    from bootstrap import Services
    from consumers.rebuild import RebuildResult

projections_app = typer.Typer(
    help="Read models: status, catch-up, rebuild, verify, redrive.", no_args_is_help=True
)


@projections_app.command("status")
def status() -> None:
    """Each read model's position, exactly how many events it is behind, whether it is
    catching up, and its parked customers (the relay's too, in full mode).

    Example: clientele projections status
    """
    from rich.table import Table

    from bootstrap import build
    from consumers.migrate import migrate
    from consumers.status import pipeline_report

    with build() as services:
        migrate(services)
        report = pipeline_report(services)
    table = Table(
        "stage", "position", "lag (events)", "state", "parked", "oldest parked: customer, reason"
    )
    rows = [("relay", report["relay"])] if "relay" in report else []
    rows += [(row["name"], row) for row in report["projections"]]
    for name, row in rows:
        oldest = row["parked"]["oldest"]
        held = f"{oldest['customer_id']} v{oldest['version']}: {oldest['reason']}" if oldest else ""
        table.add_row(
            name,
            f"{row['position']:,}",
            f"{row['lag']:,}",
            row.get("state", ""),
            str(row["parked"]["count"]),
            held,
        )
    console.print(table)


@projections_app.command("catch-up")
def catch_up() -> None:
    """Apply every event the embedded read models have not applied yet, now, with a progress
    bar: after writes made while no `serve` ran (an import does it itself), so that the next
    `serve` starts caught up. Safe while `serve` runs (they take turns).

    Full mode: `clientele consume` feeds the read models; this command refuses (exit 2).

    Example: clientele projections catch-up
    """
    from bootstrap import build

    with build() as services:
        if services.runner is None:
            raise fail("full mode: `clientele consume` feeds the read models", 2)
        applied, seconds = feed_with_progress(services, "catching up")
        head = services.store.head()
    rate = f" ({applied / seconds:,.0f} events/s)" if applied and seconds > 0 else ""
    console.print(
        f"{applied:,} events applied in {seconds:.1f}s{rate}; read models at the store's "
        f"head ({head:,})"
    )


def feed_with_progress(services: Services, label: str) -> tuple[int, float]:
    """Bring the embedded read models to the store's head with a progress bar (events, rate,
    time left); returns (events applied, seconds). Nothing to do in full mode: (0, 0.0)."""
    from consumers.embedded import catch_up_read_models
    from consumers.migrate import migrate

    if services.runner is None:
        return 0, 0.0
    migrate(services)
    backlog = services.runner.backlog()
    started = time.monotonic()
    with progress_bar(rate=True) as progress:
        task = progress.add_task(label, total=backlog, rate="")

        def advance(count: int) -> None:
            done = progress.tasks[0].completed + count
            seconds = time.monotonic() - started
            rate = f"{done / seconds:,.0f} events/s" if seconds > 0 else ""
            progress.update(task, completed=done, total=max(backlog, done), rate=rate)

        applied = catch_up_read_models(services, on_batch=advance)
    return applied, time.monotonic() - started


@projections_app.command("redrive")
def redrive(
    name: Annotated[
        str | None, typer.Argument(help="Projection name (default: every projection).")
    ] = None,
    customer: Annotated[UUID | None, typer.Option(help="Only this parked customer.")] = None,
) -> None:
    """Re-apply parked customers' events from the event store now (after a fix).

    Consumers and the embedded runner also retry on their own, with backoff.
    Exit code 1 while a customer is still parked.

    Example: clientele projections redrive profiles --customer 3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e
    """
    from rich.table import Table

    from bootstrap import build
    from consumers.migrate import migrate
    from consumers.redrive import redrive as redrive_parked
    from projections.registry import by_name

    with build() as services:
        migrate(services)
        try:
            projectors = [by_name(name)] if name else services.projectors
        except KeyError as error:
            raise fail(str(error.args[0]), 2) from None
        outcomes = redrive_parked(
            services.feed, services.read_store, projectors, customer_id=customer, due_only=False
        )
    table = Table("projection", "customer", "events applied", "outcome")
    for outcome in outcomes:
        still = outcome.parked
        verdict = f"still parked at v{still.version}: {still.reason}" if still else "flows again"
        table.add_row(outcome.projection, outcome.customer_id, str(outcome.applied), verdict)
    console.print(table if outcomes else "no parked customers")
    if any(o.parked for o in outcomes):
        raise typer.Exit(1)


def _rebuild(name: str, *, verify_only: bool) -> RebuildResult:
    from bootstrap import build
    from consumers.migrate import migrate
    from consumers.rebuild import rebuild, worker_count
    from infra.runtime import settled_heap
    from projections.registry import by_name

    with build() as services:
        migrate(services)
        try:
            projector = by_name(name)
        except KeyError as error:
            raise fail(str(error.args[0]), 2) from None
        if verify_only and services.runner is not None:
            services.runner.catch_up()  # embedded: compare the live copy at the store's head
        # start-up's heap out of the collector's way for the replay, as long-running processes do
        with settled_heap(), progress_bar() as progress:
            task = progress.add_task(f"{'verifying' if verify_only else 'rebuilding'} {name}")
            return rebuild(
                services.feed,
                services.read_store,
                projector,
                verify_only=verify_only,
                progress=lambda reached, head: progress.update(task, completed=reached, total=head),
                workers=worker_count(services.settings.rebuild_workers),
                connect=services.connect_worker,
            )


@projections_app.command("rebuild")
def rebuild(name: Annotated[str, typer.Argument(help="Projection name.")]) -> None:
    """Replay the store into a shadow copy (live copy keeps serving), then swap it in.

    Example: clientele projections rebuild profiles
    """
    result = _rebuild(name, verify_only=False)
    rate = result.events / result.seconds if result.seconds else 0.0
    console.print(
        f"{name} rebuilt to position {result.position}: {result.events} events "
        f"in {result.seconds:.1f}s ({rate:,.0f} events/s)"
    )


@projections_app.command("verify")
def verify(name: Annotated[str, typer.Argument(help="Projection name.")]) -> None:
    """Rebuild into a shadow copy and report every difference from the live copy.

    Exit code 1 when they differ. Example: clientele projections verify profiles
    """
    result = _rebuild(name, verify_only=True)
    if result.differences:
        for difference in result.differences:
            errors.print(f"[red]differs:[/] {difference}")
        raise typer.Exit(1)
    console.print(f"{name}: live copy equals a rebuild at position {result.position}")
