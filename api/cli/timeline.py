"""``clientele replay``: a customer's timeline as an auditor reads it (not a rebuild)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer

from api.cli.support import console, fail

if TYPE_CHECKING:
    from consumers.store_feed import StoreFeed
    from infra.envelope import Envelope


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
    """Print a customer's timeline as an auditor reads it, in the order it was recorded, and
    (without --json) their churn risk as of the view's moment (--as-of, else --until, else the
    last event's business time) under the churn model version in force then.

    Example: clientele replay 3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e --until 2026-01-31T23:59:59Z
    """
    for name, moment in (("--until", until), ("--as-of", as_of)):
        if moment is not None and moment.tzinfo is None:
            raise fail(f"{name} needs a time zone, e.g. 2026-01-31T23:59:59Z", 2)
    from bootstrap import build
    from projections import profile_fold
    from projections.churn import risk_in_view

    with build() as services:
        envelopes = _whole_history(services.feed, customer_id)
        timeline = list(profile_fold.in_view(envelopes, as_of=as_of, known_at=until))
        model = services.models.get()
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
    state = profile_fold.travel(customer_id, timeline)
    moment = as_of or until or timeline[-1].occurred_at
    risk = None if state is None else risk_in_view(model, state, moment, until)
    if risk is None:
        console.print(
            f"churn risk as of {moment.isoformat()}: none (no fit in force, or no purchase)"
        )
    else:
        console.print(
            f"churn risk as of {risk['as_of']} (model churn v{risk['model_version']}): "
            f"p_alive {risk['p_alive']}, expected purchases in {risk['horizon_days']} days "
            f"{risk['expected_purchases']}"
        )


def _whole_history(feed: StoreFeed, customer_id: UUID, page: int = 1000) -> list[Envelope]:
    """Every event of a customer as its envelope, with its hash-chain links, oldest first."""
    envelopes: list[Envelope] = []
    while batch := feed.customer_events(customer_id, len(envelopes), page):
        envelopes += batch
        if len(batch) < page:
            break
    return envelopes
