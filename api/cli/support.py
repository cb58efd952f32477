"""What the ``clientele`` command modules share: consoles, errors, progress bars.

Every CLI call pays for the modules it imports before doing anything, so the command modules
(``api/cli/*.py``) import only typer, rich and the standard library at the top; what a command
needs (the store, FastAPI, Kafka, the domain …) is imported inside it.
``tests/unit/test_cli_first_hour.py`` checks that light commands load none of the heavy
dependencies.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rich.progress import Progress

    from infra.settings import Settings

console = Console()
errors = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr, the message as plain text (a ``[models]`` in it is
    not markup); raise the returned exit (status ``code``)."""
    errors.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def say_on_stderr(line: str) -> None:
    """One plain line on stderr (never wrapped, so it can be copied whole)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def progress_bar(*, rate: bool = False) -> Progress:
    """A progress bar on stderr: done/total and elapsed time; ``rate`` adds the task's
    ``rate`` field (set by the command, e.g. "7,400 events/s") and the time left."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[ProgressColumn | str] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    if rate:
        columns += [TextColumn("{task.fields[rate]}"), "left", TimeRemainingColumn()]
    return Progress(*columns, console=errors)


def full_mode() -> tuple[Settings, str]:
    """(settings, Kafka bootstrap servers) of full mode, or exit 2 saying how to set it up."""
    from infra.settings import get_settings

    settings = get_settings()
    if not settings.kafka_bootstrap:
        errors.print("[red]error:[/] set CLIENTELE_KAFKA_BOOTSTRAP (see `clientele dev up`)")
        raise typer.Exit(2)
    return settings, settings.kafka_bootstrap
