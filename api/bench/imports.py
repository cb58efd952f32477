"""Import scenario: ``clientele import`` against the batch path on the same rows, on PostgreSQL
(fsync on, as ingest) and on SQLite.

The data is the generated shop export of ``clientele import sample``: customers with external
ids, purchases by external id without order ids (dates only, zero amounts, identical same-day
rows). Per repeat and backend, on fresh databases:

* **batch path** (the baseline): the very commands the import derives from those files, built
  before the clock starts, sent through ``CommandService.execute_batch`` in batches of the
  import's size — what a service that already holds its commands gets;
* **import**: what ``clientele import customers`` then ``import purchases`` do after start-up:
  check each file whole, stream it, build the commands, send them, write the result file and
  the checkpoint.

Both send each file from a settled heap (:func:`~infra.runtime.settled_heap`), as
``run_import`` settles it. The batch path's prebuilt commands, an input no writer holds, are
frozen as in the ingest scenario: left in the collector's sight, those ~320k objects made the
baseline's full collections rarer (14 against the import's 39 at full size), a help no caller
of the batch path has (BENCHMARKS.md, round 14). On both sides the customers the first file
left in the writer's cache are frozen while the second file is sent.

Rows per second count input rows (customers + purchases). The ratio import ÷ batch path is taken
per repeat (the two run back to back, alternating which goes first) and its median reported.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from api.bench.harness import Sizes, Stack, summary
from api.cli.importing.fields import CUSTOMERS, PURCHASES, Kind, Naming, parse_renames, zone
from api.cli.importing.journal import Journal
from api.cli.importing.rows import RowBuilder
from api.cli.importing.runner import Plan, rows, run_import
from api.cli.importing.sample import Sample, write_sample
from api.cli.importing.source import open_source
from bootstrap import Services, build
from commands.messages import Command
from commands.service import Context
from consumers.migrate import migrate
from infra.runtime import settled_heap
from infra.settings import Settings

Say = Callable[[str], None]
BATCH = 500
SYSTEM = "shop"
FILES: tuple[tuple[Kind, str, tuple[str, ...]], ...] = (
    (CUSTOMERS, "customers_csv", ()),
    (PURCHASES, "purchases_csv", ("Date=occurred_at",)),
)


def _plans(sample: Sample) -> list[Plan]:
    plans = []
    for kind, attribute, pairs in FILES:
        naming = Naming(kind, parse_renames(pairs, kind), SYSTEM)
        plans.append(Plan(open_source(getattr(sample, attribute), naming), "UTC", BATCH))
    return plans


def _builder(plan: Plan) -> RowBuilder:
    return RowBuilder(plan.naming.kind, plan.source.digest, system=SYSTEM, zone=zone("UTC"))


def _commands(sample: Sample) -> list[list[list[Command]]]:
    """The import's commands: per file, in batches of the import's size."""
    files: list[list[list[Command]]] = []
    for plan in _plans(sample):
        batches: list[list[Command]] = []
        pending: list[Command] = []
        for row in rows(plan, _builder(plan)):
            pending.extend(row.commands)
            if len(pending) >= BATCH:
                batches.append(pending)
                pending = []
        if pending:
            batches.append(pending)
        files.append(batches)
    return files


@contextmanager
def _fresh(settings: Settings) -> Iterator[Services]:
    with build(settings) as services:
        migrate(services)
        yield services


def _batch_path(settings: Settings, sample: Sample) -> float:
    """Seconds to send the import's commands, built beforehand, through the batch path."""
    context = Context(actor="bench")
    files = _commands(sample)  # freed before the import runs: it holds no such heap
    with _fresh(settings) as services:
        started = time.perf_counter()
        for batches in files:  # settled per file, as run_import settles each file it sends
            with settled_heap():
                for batch in batches:
                    services.commands.execute_batch(batch, context)
        return time.perf_counter() - started


def _import(settings: Settings, sample: Sample, results: Path) -> float:
    with _fresh(settings) as services:
        started = time.perf_counter()
        for n, plan in enumerate(_plans(sample)):
            journal = Journal(results / f"result-{n}.csv", plan.identity(), resume=False)
            tally = run_import(services.commands, plan, _builder(plan), journal)
            journal.finish()
            if tally.outcomes["imported"] != plan.source.rows:
                raise RuntimeError(f"import left rows out: {dict(tally.outcomes)}")
        return time.perf_counter() - started


def run(stack: Stack, sizes: Sizes, say: Say) -> dict[str, Any]:
    """The ``imports`` scenario on PostgreSQL and SQLite (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="clientele-import-bench-") as folder:
        root = Path(folder)
        sample = write_sample(root / "sample", sizes.import_customers, sizes.import_purchases)
        total = sample.customers + sample.purchases
        backends: dict[str, Callable[[int, str], Settings]] = {
            "postgresql": lambda n, path: stack.settings(stack.database(f"import_{path}{n}")),
            "sqlite": lambda n, path: Settings(
                database_url=f"sqlite:///{root / f'{path}{n}.db'}", log_json=True
            ),
        }
        result: dict[str, Any] = {"rows": total, "batch_size": BATCH}
        for backend, settings in backends.items():
            batch, imported, ratios = [], [], []
            for repeat in range(sizes.repeats):
                first_batch = repeat % 2 == 0
                for step in (first_batch, not first_batch):
                    if step:
                        seconds = _batch_path(settings(repeat, "batch"), sample)
                        batch.append(total / seconds)
                    else:
                        seconds = _import(settings(repeat, "import"), sample, root)
                        imported.append(total / seconds)
                ratios.append(imported[-1] / batch[-1])
                say(
                    f"import {backend} {repeat + 1}/{sizes.repeats}: {imported[-1]:,.0f} rows/s, "
                    f"batch path {batch[-1]:,.0f}"
                )
            result[backend] = {
                "rows_per_s": summary(imported)["median"],
                "baseline_rows_per_s": summary(batch)["median"],
                "ratio": summary(ratios)["median"],
                "repeats": {"rows_per_s": summary(imported), "baseline_rows_per_s": summary(batch)},
            }
        result["ratio"] = min(result[backend]["ratio"] for backend in backends)
        result["target_ratio"] = 0.9
        result["customers"], result["purchases"] = sample.customers, sample.purchases
        return result
