"""The ``clientele`` command line (typer + rich). Every command has ``--help`` with an example.

Start-up stays short: this module and the command modules import only typer, rich and the
standard library at the top; each command imports what it needs (see :mod:`api.cli_support`).
"""

from __future__ import annotations

import errno
import socket
from datetime import datetime
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer

if TYPE_CHECKING:
    from consumers.store_feed import StoreFeed
    from infra.envelope import Envelope

from api.cli_audit import audit_app
from api.cli_bench import bench
from api.cli_full import consume, dev_app, dlq_app, ingest, relay_app
from api.cli_import import import_app
from api.cli_keys import keys_app
from api.cli_privacy import erase, rotate_master
from api.cli_projections import projections_app
from api.cli_support import console, fail, say_on_stderr

app = typer.Typer(
    name="clientele",
    help="Event-sourced customer records: commands, event store, read models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(import_app, name="import")
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


@app.callback()
def main() -> None:
    """Configuration: CLIENTELE_* environment variables, else ./var/dev/clientele.env (written
    by `clientele dev up`), else the embedded defaults (see README). Commands that open a
    store say which on stderr."""
    from infra.logging import configure_logging
    from infra.settings import STORE_NOTICE, get_settings

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    STORE_NOTICE.arm(say_on_stderr)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
) -> None:
    """Start the HTTP API. It answers at once; in embedded mode the read models catch up on
    any backlog in the background (see GET /projections).

    Exit code 1 with a one-line error when the address cannot be bound (port in use, …).

    Example: clientele serve --port 8080
    """
    listening = _bind(host, port)
    bound = listening.getsockname()[1]
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
    say_on_stderr(f"listening on {url} (API docs: {url}/docs)")
    import uvicorn

    from api.app import create_app

    config = uvicorn.Config(create_app(), log_config=None, access_log=False)
    uvicorn.Server(config).run(sockets=[listening])


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), or exit 1 saying why in one line."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listening = socket.socket(family, socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise fail(f"cannot listen on {host}:{port}: {error}") from None
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(2048)
    except OSError as error:
        listening.close()
        reasons = {
            errno.EADDRINUSE: f"port {port} on {host} is already in use (another clientele "
            f"serve?): pick another with --port, e.g. `make run PORT={port + 1}`",
            errno.EACCES: f"no permission to listen on port {port} (ports below 1024 need "
            "root): pick another with --port",
            errno.EADDRNOTAVAIL: f"{host} is not an address of this machine: pick another "
            "with --host (127.0.0.1, 0.0.0.0, …)",
        }
        raise fail(
            reasons.get(error.errno or 0, f"cannot listen on {host}:{port}: {error}")
        ) from None
    return listening


@app.command()
def migrate() -> None:
    """Create or upgrade the event store and read-model tables (idempotent).

    A read model whose schema version changed is rebuilt from the event store.

    Example: CLIENTELE_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/clientele clientele migrate
    """
    from api.bootstrap import build
    from api.bootstrap import migrate as bootstrap_migrate

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
        raise fail("--at needs a time zone, e.g. 2026-01-31T23:59:59Z", 2)
    from api.bootstrap import build, migrate, refresh_segments
    from projections import segments

    services = build()
    try:
        migrate(services)
        position = refresh_segments(services, at)
        console.print(f"refresh recorded at position {position}")
        if services.runner is not None and position is not None:
            services.runner.catch_up()
            with services.read_store.transaction() as tx:
                count = segments.changes_at(tx, position)
            console.print(f"{count} membership changes recorded")
    finally:
        services.close()


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
            raise fail(f"{name} needs a time zone, e.g. 2026-01-31T23:59:59Z", 2)
    from api.bootstrap import build
    from projections import profile

    services = build()
    try:
        envelopes = _whole_history(services.feed, customer_id)
        timeline = list(profile.in_view(envelopes, as_of=as_of, known_at=until))
    finally:
        services.close()
    if not timeline:
        by_then = " by then" if until or as_of else ""
        raise fail(f"customer {customer_id} has no events{by_then}")
    if as_json:
        for envelope in timeline:
            typer.echo(envelope.to_bytes().decode())
        return
    from rich.table import Table

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


def _whole_history(feed: StoreFeed, customer_id: UUID, page: int = 1000) -> list[Envelope]:
    """Every event of a customer as its envelope, with its hash-chain links, oldest first."""
    envelopes: list[Envelope] = []
    while batch := feed.customer_events(customer_id, len(envelopes), page):
        envelopes += batch
        if len(batch) < page:
            break
    return envelopes
