"""``clientele erase``: erase a customer (crypto-shredding their data key)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer
from rich.console import Console

console = Console(stderr=True)


def erase(
    customer_id: Annotated[UUID, typer.Argument(help="The customer to erase.")],
    reason: Annotated[
        str | None, typer.Option(help="Why (a short code, not personal data).")
    ] = None,
) -> None:
    """Erase a customer: record customer.erased and shred their data key in one transaction;
    read models drop their personal data as they apply it. Every duplicate merged into the
    customer (down merge chains) is erased with it; a merged duplicate alone is refused, naming
    the survivor to erase instead.

    Example: clientele erase 3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e --reason gdpr-request
    """
    import orjson

    from bootstrap import build
    from commands.messages import EraseCustomer
    from commands.service import Context
    from domain.errors import DomainError

    with build() as services:
        try:
            outcome = services.commands.execute(
                EraseCustomer(customer_id=customer_id, reason=reason), Context(actor="cli:erase")
            )
        except DomainError as error:
            console.print(f"[bold red]refused:[/] {error}")
            raise typer.Exit(1) from None
    typer.echo(
        orjson.dumps(
            {
                "customer_id": str(customer_id),
                "version": outcome.version,
                "position": outcome.position,
            }
        ).decode()
    )
