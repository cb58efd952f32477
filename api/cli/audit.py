"""``clientele audit``: verify the tamper-evident history, sign chain heads."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer
from rich.console import Console

audit_app = typer.Typer(
    help="Tamper-evident history: verify chains and seals, make seals.", no_args_is_help=True
)
console = Console(stderr=True)
RFC3339 = ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"]


@audit_app.command("verify")
def verify(
    customer: Annotated[UUID | None, typer.Option(help="Only this customer's chain.")] = None,
) -> None:
    """Recompute every hash link and check every seal; exit 1 naming what broke.

    Example: clientele audit verify --customer 3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e
    """
    import orjson

    from bootstrap import build
    from infra.tamper_evidence import seals

    with build() as services:
        report = seals.verify(
            services.store_db,
            services.settings.seal_key.encode(),
            services.store.events_table,
            customer,
        )
    typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    if not report["ok"]:
        for problem in report["problems"]:
            console.print(f"[red]broken:[/] {problem}")
        raise typer.Exit(1)


@audit_app.command("seal")
def seal() -> None:
    """Sign the head of every chain (HMAC with CLIENTELE_SEAL_KEY), so deleting the newest
    events of a customer is detectable. `serve` also seals periodically.

    Example: clientele audit seal
    """
    import orjson

    from bootstrap import build
    from infra.tamper_evidence import seals

    with build() as services:
        made = seals.seal(services.store_db, services.settings.seal_key.encode())
    typer.echo(orjson.dumps(made).decode())


@audit_app.command("export")
def export(
    start: Annotated[
        datetime | None,
        typer.Option("--from", formats=RFC3339, help="Recorded at or after (RFC 3339)."),
    ] = None,
    end: Annotated[
        datetime | None, typer.Option("--to", formats=RFC3339, help="Recorded before (RFC 3339).")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """JSONL of the events recorded in [from, to) with their hashes, stored form and every
    seal; a third party checks it with `python3 infra/tamper_evidence/offline_verify.py FILE --seal-key KEY`.

    Example: clientele audit export --from 2026-01-01T00:00:00Z --to 2026-02-01T00:00:00Z --output jan.jsonl
    """
    for value, name in ((start, "--from"), (end, "--to")):
        if value is not None and value.tzinfo is None:
            console.print(f"[red]error:[/] {name} needs a time zone (e.g. 2026-01-01T00:00:00Z)")
            raise typer.Exit(2)
    from bootstrap import build
    from infra.tamper_evidence.export import export_lines

    with build() as services:
        sink = output.open("wb") if output else sys.stdout.buffer
        try:
            for line in export_lines(services.store, services.store_db, start, end):
                sink.write(line)
        finally:
            if output:
                sink.close()
