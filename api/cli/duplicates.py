"""``clientele duplicates``: find probable duplicate customers."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.support import console, errors

duplicates_app = typer.Typer(help="Duplicate customers: scan for them.", no_args_is_help=True)


@duplicates_app.command("scan")
def duplicates_scan(
    full: Annotated[
        bool, typer.Option("--full", help="Compare every pair again, not only changed customers.")
    ] = False,
) -> None:
    """Find probable duplicates among live customers and keep them for `GET /v1/duplicates`
    (with their match probability and per-field evidence). After the first scan, only pairs
    with a customer registered or changed since the last scan are compared again; --full
    compares all. Merged and erased customers never appear; dismissed pairs only when changed.

    In embedded mode the read models are brought up to date first; in full mode `consume`
    keeps them (the scan reads what they hold).

    Example: clientele duplicates scan
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bootstrap import build
    from consumers.migrate import migrate
    from projections import duplicate_candidates

    with build() as services:
        migrate(services)
        if services.runner is not None:
            services.runner.catch_up()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
        ) as progress:
            task = progress.add_task("comparing candidate pairs", total=None)
            result = duplicate_candidates.scan(
                services.read_store, full=full, progress=lambda n: progress.advance(task, n)
            )
        kind = "full" if result.full else "incremental"
        console.print(
            f"{kind} scan of {result.customers} live customers at position {result.position}: "
            f"{result.compared} compared again, {result.candidates} candidate pairs kept"
        )
