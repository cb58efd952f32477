"""The ``clientele`` command line (typer + rich). Every command has ``--help`` with an example."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.bootstrap import build, parallel_rebuild, refresh_segments
from api.bootstrap import migrate as bootstrap_migrate
from api.cli_audit import audit_app
from api.cli_bench import bench
from api.cli_full import consume, dev_app, dlq_app, ingest, relay_app
from api.cli_import import import_app
from api.cli_keys import keys_app
from api.cli_privacy import erase, rotate_master
from api.status import pipeline_report
from consumers.rebuild import RebuildResult, rebuild
from consumers.redrive import redrive
from infra.envelope import Envelope
from infra.logging import configure_logging
from infra.settings import get_settings
from projections import profile, segments
from projections.registry import by_name

app = typer.Typer(
    name="clientele",
    help="Event-sourced customer records: commands, event store, read models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(import_app, name="import")
projections_app = typer.Typer(
    help="Read models: status, rebuild, verify, redrive.", no_args_is_help=True
)
app.add_typer(projections_app, name="projections")
segments_app = typer.Typer(help="Segments: re-decide time-relative rules.", no_args_is_help=True)
app.add_typer(segments_app, name="segments")
app.add_typer(keys_app, name="keys")
keys_app.command("rotate-master")(rotate_master)
app.command("erase")(erase)
app.add_typer(dev_app, name="dev")
app.add_typer(relay_app, name="relay")
app.command("consume")(consume)
app.command("ingest")(ingest)
app.add_typer(dlq_app, name="dlq")
app.add_typer(audit_app, name="audit")
app.command("bench")(bench)
_BAR = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
console = Console()
errors = Console(stderr=True)


@app.callback()
def main() -> None:
    """Configuration comes from CLIENTELE_* environment variables (see README)."""
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)


def _fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Start the HTTP API.

    Example: clientele serve --port 8000
    """
    import uvicorn  # noqa: PLC0415 - only the server needs it

    from api.app import create_app  # noqa: PLC0415

    uvicorn.run(create_app(), host=host, port=port, log_config=None, access_log=False)


@app.command()
def migrate() -> None:
    """Create or upgrade the event store and read-model tables (idempotent).

    A read model whose schema version changed is rebuilt from the event store.

    Example: CLIENTELE_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/clientele clientele migrate
    """
    services = build()
    try:
        rebuilt = bootstrap_migrate(services)
        console.print(f"event store at position {services.store.head()}; read models ready")
        for name in rebuilt:
            console.print(f"rebuilt {name} (schema changed)")
    finally:
        services.close()


@segments_app.command("refresh")
def segments_refresh(
    at: Annotated[
        datetime | None, typer.Option(help="Decide as of this instant (default: now).")
    ] = None,
) -> None:
    """Record a refresh: time-relative segments ("no contact for 30 days") and RFM segments
    are decided again for every customer, as of --at, by the segments read model.

    `serve` also does this periodically (CLIENTELE_SEGMENT_REFRESH_SECONDS). In embedded
    mode the read model is brought up to date at once; in full mode `consume` applies it.

    Example: clientele segments refresh
    """
    if at is not None and at.tzinfo is None:
        raise _fail("--at needs a time zone, e.g. 2026-01-31T23:59:59Z", 2)
    services = build()
    try:
        bootstrap_migrate(services)
        position = refresh_segments(services, at)
        console.print(f"refresh recorded at position {position}")
        if services.runner is not None and position is not None:
            services.runner.catch_up()
            with services.read_store.transaction() as tx:
                count = segments.changes_at(tx, position)
            console.print(f"{count} membership changes recorded")
    finally:
        services.close()


@projections_app.command("status")
def projections_status() -> None:
    """Each read model's position, how many events it is behind and its parked customers
    (the relay's too, in full mode).

    Example: clientele projections status
    """
    services = build()
    try:
        bootstrap_migrate(services)
        report = pipeline_report(services)
    finally:
        services.close()
    table = Table("stage", "position", "lag (events)", "parked", "oldest parked: customer, reason")
    rows = [("relay", report["relay"])] if "relay" in report else []
    rows += [(row["name"], row) for row in report["projections"]]
    for name, row in rows:
        oldest = row["parked"]["oldest"]
        held = f"{oldest['customer_id']} v{oldest['version']}: {oldest['reason']}" if oldest else ""
        table.add_row(
            name, str(row["position"]), str(row["lag"]), str(row["parked"]["count"]), held
        )
    console.print(table)


@projections_app.command("redrive")
def projections_redrive(
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
    services = build()
    try:
        bootstrap_migrate(services)
        try:
            projectors = [by_name(name)] if name else services.projectors
        except KeyError as error:
            raise _fail(str(error.args[0]), 2) from None
        outcomes = redrive(
            services.feed, services.read_store, projectors, customer_id=customer, due_only=False
        )
    finally:
        services.close()
    table = Table("projection", "customer", "events applied", "outcome")
    for outcome in outcomes:
        still = outcome.parked
        verdict = f"still parked at v{still.version}: {still.reason}" if still else "flows again"
        table.add_row(outcome.projection, outcome.customer_id, str(outcome.applied), verdict)
    console.print(table if outcomes else "no parked customers")
    if any(o.parked for o in outcomes):
        raise typer.Exit(1)


def _rebuild(name: str, *, verify_only: bool) -> RebuildResult:
    services = build()
    try:
        bootstrap_migrate(services)
        try:
            projector = by_name(name)
        except KeyError as error:
            raise _fail(str(error.args[0]), 2) from None
        if verify_only and services.runner is not None:
            services.runner.catch_up()  # embedded: compare the live copy at the store's head
        workers, connect = parallel_rebuild(services)
        with Progress(*_BAR, console=errors) as progress:
            task = progress.add_task(f"{'verifying' if verify_only else 'rebuilding'} {name}")
            return rebuild(
                services.feed,
                services.read_store,
                projector,
                verify_only=verify_only,
                progress=lambda reached, head: progress.update(task, completed=reached, total=head),
                workers=workers,
                connect=connect,
            )
    finally:
        services.close()


@projections_app.command("rebuild")
def projections_rebuild(name: Annotated[str, typer.Argument(help="Projection name.")]) -> None:
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
def projections_verify(name: Annotated[str, typer.Argument(help="Projection name.")]) -> None:
    """Rebuild into a shadow copy and report every difference from the live copy.

    Exit code 1 when they differ. Example: clientele projections verify profiles
    """
    result = _rebuild(name, verify_only=True)
    if result.differences:
        for difference in result.differences:
            errors.print(f"[red]differs:[/] {difference}")
        raise typer.Exit(1)
    console.print(f"{name}: live copy equals a rebuild at position {result.position}")


@app.command()
def replay(
    customer_id: Annotated[UUID, typer.Argument(help="The customer to replay.")],
    until: Annotated[
        datetime | None,
        typer.Option(
            help="What we knew then: only events RECORDED at or before this time (RFC 3339)."
        ),
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            help="The customer as of then: only events that HAD HAPPENED by this business "
            "time (occurred_at, RFC 3339); combines with --until.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print envelopes as JSON lines.")] = False,
) -> None:
    """Print a customer's timeline as an auditor reads it, in the order it was recorded.

    Example: clientele replay 3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e --until 2026-01-31T23:59:59Z
    """
    for name, moment in (("--until", until), ("--as-of", as_of)):
        if moment is not None and moment.tzinfo is None:
            raise _fail(f"{name} needs a time zone, e.g. 2026-01-31T23:59:59Z", 2)
    services = build()
    try:
        history = services.store.history(customer_id)
        envelopes = (Envelope.from_event(event, position) for position, event in history)
        timeline = list(profile.in_view(envelopes, as_of=as_of, known_at=until))
    finally:
        services.close()
    if not timeline:
        by_then = " by then" if until or as_of else ""
        raise _fail(f"customer {customer_id} has no events{by_then}")
    if as_json:
        for envelope in timeline:
            typer.echo(envelope.to_bytes().decode())
        return
    table = Table("v", "position", "recorded at", "occurred at", "type", "actor", "data")
    for column in table.columns:
        column.overflow = "fold"
    for envelope in timeline:
        table.add_row(
            str(envelope.version),
            str(envelope.position),
            envelope.recorded_at.isoformat(timespec="seconds"),
            envelope.occurred_at.isoformat(timespec="seconds"),
            envelope.type,
            envelope.actor,
            ", ".join(f"{k}={v}" for k, v in envelope.data.items()),
        )
    console.print(table)
