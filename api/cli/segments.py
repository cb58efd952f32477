"""``clientele segments``: re-decide time-relative and RFM segments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from api.cli.support import console, fail

segments_app = typer.Typer(help="Segments: re-decide time-relative rules.", no_args_is_help=True)


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
    from bootstrap import build
    from consumers.migrate import migrate
    from consumers.segment_refresh import refresh_segments
    from projections import segment_queries

    with build() as services:
        migrate(services)
        position = refresh_segments(services.segments, services.read_store, at)
        console.print(f"refresh recorded at position {position}")
        if services.runner is not None and position is not None:
            services.runner.catch_up()
            with services.read_store.transaction() as tx:
                count = segment_queries.changes_at(tx, position)
            console.print(f"{count} membership changes recorded")
