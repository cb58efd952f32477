"""Running an import: rows in batches through the group-commit ``CommandService.execute_batch``.

A batch's commands share one store transaction; a rejected command is rolled back alone (the
service's rule), so a bad row never blocks the good ones around it. Each committed batch's
results go to the journal before the next batch is sent, and the checkpoint follows at least
once a second, so a resumed run sends again at most about a second of rows — changing nothing
that was already recorded.

Rows are read and built in the same thread that sends them: a reader thread building the next
batch meanwhile was slower (BENCHMARKS.md, "Bulk import"), as it holds the GIL whenever SQLite
or psycopg let go of it.

An import is one long job, run from a settled heap (:func:`~infra.runtime.settled_heap`, as a
rebuild): what start-up built (modules, the store, the services) is out of the collector's
sight while rows are sent, so its full collections — one every few batches, as the import
allocates — scan what the import holds, not the whole process (BENCHMARKS.md, round 14).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.cli.importing.fields import Naming
from api.cli.importing.journal import Journal, Result, Tally
from api.cli.importing.rows import Row, RowBuilder
from api.cli.importing.source import Source
from commands.duplicates import new_customers
from commands.service import CommandService, Context, Outcome
from infra.runtime import settled_heap
from projections.duplicate_candidates import RegistrationCheck

ACTOR = "clientele:import"


@dataclass(frozen=True)
class Plan:
    """What shapes an import's commands (the checkpoint belongs to exactly this)."""

    source: Source
    timezone: str
    batch_size: int = 500

    @property
    def naming(self) -> Naming:
        return self.source.naming

    def identity(self) -> dict[str, Any]:
        naming = self.naming
        return {
            "file": self.source.digest,
            "format": self.source.format,
            "kind": naming.kind.name,
            "map": dict(sorted(naming.renames.items())),
            "system": naming.system,
            "timezone": self.timezone,
        }


def default_result_path(path: Path) -> Path:
    """``orders.csv`` → ``orders.csv.result.csv`` (beside the input)."""
    return path.with_name(path.name + ".result.csv")


def rows(plan: Plan, builder: RowBuilder) -> Iterator[Row]:
    """Every data row of the file, built (or refused) in file order."""
    for line, values in plan.source.records():
        if isinstance(values, dict):
            yield builder.build(line, values)
        else:
            yield Row(line, (), problem=values)


def result(row: Row, outcomes: Sequence[Outcome]) -> Result:
    """What became of a row: its first problem, else imported if anything was recorded."""
    system, external_id = row.ref or ("", "")
    problem = row.problem or next((o.problem for o in outcomes if o.problem is not None), None)
    customer = next((o.customer_id for o in outcomes if o.customer_id), row.customer_id)
    if problem is not None:
        outcome = "rejected"
    elif any(o.events for o in outcomes):
        outcome = "imported"
    else:
        outcome = "unchanged"
    return Result(
        row.line,
        outcome,
        str(customer) if customer is not None else "",
        system,
        external_id,
        row.order_id or "",
        problem.code if problem is not None else "",
        problem.message if problem is not None else "",
        field=str(problem.details.get("field", "")) if problem is not None else "",
    )


def batches(plan: Plan, builder: RowBuilder, after_line: int) -> Iterator[list[Row]]:
    """The rows after ``after_line`` in batches of ``plan.batch_size``. Rows up to it are still
    read and built (cheap: derived order ids count identical rows from the top of the file)."""
    pending: list[Row] = []
    for row in rows(plan, builder):
        if row.line <= after_line:
            continue
        pending.append(row)
        if len(pending) >= plan.batch_size:
            yield pending
            pending = []
    if pending:
        yield pending


def _with_duplicates(results: list[Result], found: dict[int, list[dict[str, Any]]]) -> list[Result]:
    return [
        r._replace(
            possible_duplicates=" ".join(
                f"{d['customer_id']}:{d['probability']:.3f}" for d in found.get(i, ())
            )
        )
        for i, r in enumerate(results)
    ]


def run_import(
    service: CommandService,
    plan: Plan,
    builder: RowBuilder,
    journal: Journal,
    *,
    on_progress: Callable[[int], None] = lambda _: None,
    duplicates: RegistrationCheck | None = None,
) -> Tally:
    """Import every row after the journal's checkpoint; returns the tally of the whole file.
    With ``duplicates``, each new customer is checked (the result file's
    ``possible_duplicates``)."""
    context = Context(actor=ACTOR, correlation_id=f"import-{plan.source.digest[:16]}")
    with settled_heap():
        for batch in batches(plan, builder, journal.after_line):
            _send(service, context, batch, journal, duplicates)
            on_progress(len(batch))
    return journal.tally


def _send(
    service: CommandService,
    context: Context,
    batch: list[Row],
    journal: Journal,
    duplicates: RegistrationCheck | None,
) -> None:
    """One batch through the batch path, its results to the journal."""
    commands = [command for row in batch for command in row.commands]
    outcomes = service.execute_batch(commands, context) if commands else []
    done = iter(outcomes)
    results = [result(row, [next(done) for _ in row.commands]) for row in batch]
    if duplicates is not None:
        owner = [index for index, row in enumerate(batch) for _ in row.commands]
        new = new_customers(commands, outcomes, service.default_region)
        checked = duplicates.check(list(new.values()))
        found = {owner[i]: dupes for i, dupes in zip(new, checked, strict=True)}
        results = _with_duplicates(results, found)
    journal.record(results, batch[-1].line)
