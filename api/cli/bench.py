"""``clientele bench``: throughput and latency of every stage on throwaway local services.

The suite (:mod:`api.bench`) is loaded only when the command runs, with its own optional
dependencies (the ``bench`` extra); without them the command says how to get them."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from api.cli.support import fail

console = Console(stderr=True)
OPTIONAL = ("psutil",)  # the `bench` extra of pyproject.toml; the runtime never needs them


def _interrupt(*_: object) -> NoReturn:
    raise KeyboardInterrupt  # unwinds every scenario's clean-up


def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="Small sizes, one repeat (< 3 min).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="A scenario group (repeatable); a wrong name lists them."),
    ] = None,
    rebuild_store: Annotated[
        Path | None,
        typer.Option(
            "--rebuild-store",
            help="Keep the rebuild scenario's seeded PostgreSQL cluster in this directory: "
            "seeded by the first run, reused by later runs of the same size (only the "
            "rebuild is timed either way). Durability off, as the throwaway one.",
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Run every benchmark scenario against fresh PostgreSQL and broker instances.

    Progress goes to stderr; the table (or, with --json, the JSON report) to stdout.
    Exit code 1 if a scenario failed to run (missed targets do not fail).

    Example: clientele bench --quick --json > bench.json
    """
    try:
        from api.bench import report as reporting
        from api.bench.run import GROUPS, ON_REQUEST, run
    except ModuleNotFoundError as error:
        if error.name not in OPTIONAL:
            raise
        raise fail(
            f"clientele bench needs its optional dependencies ({error.name} is missing): "
            "pip install 'clientele[bench]', or in a checkout: uv sync --extra bench",
            2,
        ) from None

    groups = tuple(only or GROUPS)
    unknown = sorted(set(groups) - set(GROUPS) - set(ON_REQUEST))
    if unknown:
        known = ", ".join(GROUPS + ON_REQUEST)
        console.print(f"[red]error:[/] unknown groups {unknown}; known: {known}")
        raise typer.Exit(2)
    signal.signal(signal.SIGTERM, _interrupt)
    result = run(
        quick=quick,
        groups=groups,
        say=lambda text: console.print(text, highlight=False),
        rebuild_store=rebuild_store,
    )
    reporting.mark_targets(result)
    if as_json:
        sys.stdout.buffer.write(reporting.to_json(result) + b"\n")
        sys.stdout.flush()
    else:
        Console(width=None if sys.stdout.isatty() else 160).print(reporting.table(result))
    if result["errors"]:
        raise typer.Exit(1)
