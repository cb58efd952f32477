"""``clientele audit``: verify the tamper-evident history, sign chain heads."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import orjson
import typer
from rich.console import Console

from api.bootstrap import audit_store, build
from projections import integrity

audit_app = typer.Typer(
    help="Tamper-evident history: verify chains and seals, make seals.", no_args_is_help=True
)
console = Console(stderr=True)


@audit_app.command("verify")
def verify(
    customer: Annotated[UUID | None, typer.Option(help="Only this customer's chain.")] = None,
) -> None:
    """Recompute every hash link and check every seal; exit 1 naming what broke.

    Example: clientele audit verify --customer 3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e
    """
    services = build()
    db = audit_store(services)
    try:
        report = integrity.verify(
            db, services.settings.seal_key.encode(), services.store.events_table, customer
        )
    finally:
        if db is not services.outbox:
            db.close()
        services.close()
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
    services = build()
    db = audit_store(services)
    try:
        made = integrity.seal(db, services.settings.seal_key.encode())
    finally:
        if db is not services.outbox:
            db.close()
        services.close()
    typer.echo(orjson.dumps(made).decode())
