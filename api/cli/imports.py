"""``clientele import customers|purchases FILE``: bulk import with a result file and resume.

Exit codes: 0 every row imported or already there; 1 some rows rejected (the result file says
which and why); 2 the file or an option was refused (nothing imported); 3 stopped by an error
(e.g. the database went away) and 130 interrupted — in both cases the same command resumes.

Only typer, rich and the standard library are imported at the top, so ``--help`` starts fast;
each command imports what it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from api.cli.support import console, errors, fail

if TYPE_CHECKING:
    from api.cli.importing.journal import Journal, Tally

import_app = typer.Typer(
    help="Import customers or purchases from CSV or JSON Lines (see `import customers --help`).",
    no_args_is_help=True,
)


class RateColumn(ProgressColumn):
    """Rows per second, averaged by rich over the last half minute."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "… rows/s", style="progress.data.speed")


FileArg = Annotated[
    Path, typer.Argument(help="A .csv file with a header row, or a .jsonl file of JSON objects.")
]
MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="SOURCE=FIELD: read column SOURCE as FIELD (repeatable); FIELD - skips the column.",
        show_default=False,
    ),
]
SystemOpt = Annotated[
    str | None,
    typer.Option(help="The system the external_id column's ids come from (e.g. shop)."),
]
ZoneOpt = Annotated[
    str,
    typer.Option(
        "--timezone",
        help="IANA zone in which dates (1997-01-31 = its midnight) and times without an offset "
        "(1997-01-31 14:05) are read; times with an offset are kept as they are. E.g. with "
        "--timezone Europe/Berlin, 1997-01-31 is 1997-01-30T23:00:00Z.",
    ),
]
ResultOpt = Annotated[
    Path | None,
    typer.Option(help="Where to write the result file (default: FILE.result.csv beside FILE)."),
]
RestartOpt = Annotated[
    bool,
    typer.Option(
        "--restart", help="Ignore a checkpoint of an interrupted run: send every row again."
    ),
]
FormatOpt = Annotated[
    str | None, typer.Option("--format", help="csv or jsonl (default: from the file's suffix).")
]
BatchOpt = Annotated[int, typer.Option(min=1, max=5000, help="Rows per store transaction.")]


def _import(
    kind_name: str,
    path: Path,
    *,
    pairs: list[str] | None,
    system: str | None,
    timezone: str,
    result_path: Path | None,
    restart: bool,
    given_format: str | None,
    batch_size: int,
) -> None:
    import structlog

    from api.cli.importing.fields import KINDS, Naming, parse_renames, zone
    from api.cli.importing.rows import RowBuilder
    from api.cli.importing.runner import Plan, default_result_path, run_import
    from api.cli.importing.source import open_source
    from api.cli.projections import feed_with_progress
    from bootstrap import build
    from commands.aggregate_cache import AggregateCache
    from domain.errors import DomainError
    from projections.duplicate_candidates import RegistrationCheck

    if not path.is_file():
        raise fail(f"{path} is not a readable file", 2)
    kind = KINDS[kind_name]
    try:
        where = zone(timezone)
        naming = Naming(kind, parse_renames(pairs or [], kind), system)
        source = open_source(path, naming, given_format)
    except DomainError as error:
        raise fail(f"{path} refused, nothing was imported: {error.message}", 2) from None
    except OSError as error:
        raise fail(f"cannot read {path}: {error}", 2) from None
    plan = Plan(source, timezone, batch_size)
    result_path = result_path or default_result_path(path)
    journal = _open_journal(path, result_path, plan.identity(), restart=restart)
    builder = RowBuilder(kind, source.digest, system=system, zone=where)
    with build() as services:
        # A file names the same customers again and again (a purchase each): keep every one
        # between batches, not only the large ones, so each is folded from the store once.
        services.commands.cache = AggregateCache(
            services.settings.aggregate_cache_mb * 2**20, min_bytes=0
        )
        try:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                RateColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=errors,
            ) as progress:
                task = progress.add_task(
                    f"importing {kind.name}", total=source.rows, completed=journal.tally.rows
                )
                tally = run_import(
                    services.commands,
                    plan,
                    builder,
                    journal,
                    on_progress=lambda n: progress.advance(task, n),
                    duplicates=RegistrationCheck(services.read_store)
                    if kind.name == "customers"
                    else None,
                )
        except KeyboardInterrupt:
            journal.close()
            raise fail("interrupted: run the same command again to resume", 130) from None
        except Exception as error:
            journal.close()
            reason = f"{type(error).__name__}: {error}"
            structlog.get_logger(__name__).error("import.stopped", file=str(path), error=reason)
            raise fail(f"stopped by {reason}. Run the same command again to resume.", 3) from None
        else:
            journal.finish()
            # embedded mode: the read models are fed now, so a later `serve` starts caught up
            feed_with_progress(services, "updating read models")
    _summary(tally, result_path)


def _open_journal(
    path: Path, result_path: Path, identity: dict[str, Any], *, restart: bool
) -> Journal:
    """The result file and checkpoint of importing ``path``; says on stderr what it resumes."""
    from api.cli.importing.journal import Journal

    try:
        journal = Journal(result_path, identity, resume=not restart)
    except OSError as error:
        raise fail(f"cannot write the result file {result_path}: {error}", 2) from None
    if journal.stale:
        errors.print(
            f"a checkpoint for another file or other options was ignored ({path})", soft_wrap=True
        )
    if journal.resumed:
        errors.print(
            f"resuming after line {journal.after_line} ({journal.tally.rows:,} rows were done)",
            soft_wrap=True,
        )
    return journal


def _summary(tally: Tally, result_path: Path) -> None:
    counts = tally.outcomes
    console.print(
        f"{counts['imported']} imported, {counts['unchanged']} unchanged, "
        f"{counts['rejected']} rejected; result file: {result_path}",
        highlight=False,
        soft_wrap=True,  # one line, whatever the terminal's width: scripts read it
    )
    if tally.problems:
        reasons = ", ".join(f"{why}: {n}" for why, n in tally.problems.most_common())
        errors.print(f"rejected rows by problem: {reasons}", highlight=False, soft_wrap=True)
        for line, problem in tally.examples:
            errors.print(f"  line {line}: {problem}", highlight=False, soft_wrap=True)
        if counts["rejected"] > len(tally.examples):
            errors.print(f"  … every row's outcome is in {result_path}", highlight=False)
        raise typer.Exit(1)


CUSTOMERS_HELP = """Register customers.

    Columns or keys (matched ignoring case, surrounding spaces, and spaces as _): name
    (required), email, phone, source, lifecycle_stage, tags (";"-separated, or a JSON list),
    occurred_at (when they registered), customer_id; the customer's id in another system as
    external_id with --system, or customer_ref.system + customer_ref.id, or external_ids.<system>
    (JSON: {"external_ids": {"shop": "42"}}); any other column (a-z, 0-9, _) or attributes.<key>
    becomes a custom attribute.

    Rows with an external id register by it: importing again answers the same customer, so a
    second import changes nothing. The result file (one row per input row: line, outcome,
    customer_id, system, external_id, …) maps each row to its customer id.

    Exit codes: 0 all rows imported or unchanged, 1 some rejected (see the result file),
    2 file or option refused (nothing imported), 3 stopped by an error, 130 interrupted
    (3 and 130: run the same command again to resume).

    Example: clientele import customers shop-customers.csv --system shop --map "Customer No=external_id" --timezone Europe/Berlin
    """
PURCHASES_HELP = """Record purchases.

    Columns or keys (matched like customers'): the customer (customer_id, or external_id with
    --system, or customer_ref.system + customer_ref.id), amount and currency (required; amount
    as text such as 12.50), order_id, occurred_at (1997-01-31, 1997-01-31 14:05, or RFC 3339
    with an offset; the first two are read in --timezone).

    Without order_id, an id is derived from the customer, instant, amount, currency and the
    row's occurrence among identical rows, so two identical rows stay two purchases and a
    second import of the file changes nothing.

    Exit codes: as for `import customers`.

    Example: clientele import purchases orders.jsonl --system shop --timezone America/New_York --map InvoiceDate=occurred_at
    """


def _command(kind: str, help_text: str) -> Callable[..., None]:
    """The ``import KIND`` command (both kinds take the same options)."""

    def command(
        file: FileArg,
        *,
        map_: MapOpt = None,
        system: SystemOpt = None,
        timezone: ZoneOpt = "UTC",
        result: ResultOpt = None,
        restart: RestartOpt = False,
        file_format: FormatOpt = None,
        batch_size: BatchOpt = 500,
    ) -> None:
        _import(
            kind,
            file,
            pairs=map_,
            system=system,
            timezone=timezone,
            result_path=result,
            restart=restart,
            given_format=file_format,
            batch_size=batch_size,
        )

    command.__doc__ = help_text
    return command


import_app.command("customers")(_command("customers", CUSTOMERS_HELP))
import_app.command("purchases")(_command("purchases", PURCHASES_HELP))


@import_app.command("sample")
def sample(
    directory: Annotated[Path, typer.Argument(help="Where to write the four files.")],
    customers: Annotated[int, typer.Option(min=1, help="How many customers.")] = 200,
    purchases: Annotated[int, typer.Option(min=1, help="How many purchases (≥ customers).")] = 1000,
    seed: Annotated[int, typer.Option(help="The same seed writes the same files.")] = 1,
) -> None:
    """Write a generated shop export to try imports on: customers.csv/.jsonl (external ids,
    registration dates) and purchases.csv/.jsonl (no order ids, dates only, some zero amounts
    and identical same-day rows), the same data in both formats.

    Example: clientele import sample ./sample && clientele import customers sample/customers.csv --system shop
    """
    from api.cli.importing.sample import write_sample

    if purchases < customers:
        raise fail("--purchases must be at least --customers (every customer buys)", 2)
    made = write_sample(directory, customers, purchases, seed)
    console.print(
        f"wrote {made.customers} customers and {made.purchases} purchases to {directory}/"
        "customers.{csv,jsonl} and purchases.{csv,jsonl}",
        highlight=False,
        soft_wrap=True,
    )
