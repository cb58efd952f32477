"""``clientele import`` on the embedded store: result file, idempotent re-imports, resume."""

from __future__ import annotations

import csv
import gc
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from api.cli import app
from api.cli.importing.sample import Sample, write_sample
from commands.service import CommandService, Outcome
from infra.store import EventStore
from tests.import_support import freeze_counts_per_batch

runner = CliRunner()


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    return write_sample(tmp_path / "sample", customers=40, purchases=300, seed=3)


def run(*args: str | Path) -> Result:
    return runner.invoke(app, ["import", *map(str, args)])


def said(result: Result) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def customers(file: Path) -> Result:
    return run("customers", file, "--system", "shop")


def purchases(file: Path, *more: str) -> Result:
    return run("purchases", file, "--system", "shop", "--map", "Date=occurred_at", *more)


def results(file: Path) -> list[dict[str, str]]:
    with file.with_name(file.name + ".result.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def recorded(database: str) -> Counter[str]:
    """Stored purchase events per customer id (duplicates would show as extra events)."""
    store = EventStore(database)
    try:
        return Counter(
            str(n.originator_id)
            for n in store.notifications(0, 100_000)
            if n.topic.endswith(":PurchaseRecorded")
        )
    finally:
        store.close()


def head(database: str) -> int:
    store = EventStore(database)
    try:
        return store.head()
    finally:
        store.close()


def expected(sample: Sample, people: list[dict[str, str]]) -> Counter[str]:
    """Purchases per customer id, from the file and the customers' result file."""
    ids = {row["external_id"]: row["customer_id"] for row in people}
    with sample.purchases_csv.open(encoding="utf-8", newline="") as f:
        return Counter(ids[row["external_id"]] for row in csv.DictReader(f))


def test_import_maps_every_row_and_importing_again_in_any_format_changes_nothing(
    database: str, sample: Sample
) -> None:
    done = customers(sample.customers_csv)
    assert done.exit_code == 0, done.output
    assert "40 imported, 0 unchanged, 0 rejected" in done.output
    people = results(sample.customers_csv)
    assert [row["line"] for row in people] == [str(n) for n in range(2, 42)]
    assert {row["outcome"] for row in people} == {"imported"}
    assert [row["external_id"] for row in people] == [f"C{n:06d}" for n in range(1, 41)]
    assert len({row["customer_id"] for row in people}) == 40
    done = purchases(sample.purchases_csv)
    assert done.exit_code == 0, done.output
    assert "300 imported, 0 unchanged, 0 rejected" in done.output
    orders = results(sample.purchases_csv)
    assert len({row["order_id"] for row in orders}) == 300  # identical rows: two purchases
    assert recorded(database) == expected(sample, people)
    before = head(database)
    for again in (
        customers(sample.customers_csv),
        customers(sample.customers_jsonl),
        purchases(sample.purchases_csv),
        purchases(sample.purchases_jsonl),
    ):
        assert again.exit_code == 0, again.output
        assert "\n0 imported," in again.output and "0 rejected" in again.output
    assert head(database) == before
    assert results(sample.purchases_jsonl) == [  # the same rows and derived ids (no header)
        {**row, "outcome": "unchanged", "line": str(int(row["line"]) - 1)} for row in orders
    ]


def interrupt_after(monkeypatch: pytest.MonkeyPatch, batches: int, error: BaseException) -> None:
    real = CommandService.execute_batch
    calls = [0]

    def flaky(self: CommandService, commands: Sequence[Any], context: Any) -> list[Outcome]:
        calls[0] += 1
        if calls[0] > batches:
            raise error
        return real(self, commands, context)

    monkeypatch.setattr(CommandService, "execute_batch", flaky)


def test_rows_are_sent_from_a_settled_heap_which_the_import_unsettles_when_done(
    database: str, sample: Sample, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long job: start-up's objects are out of the collector's sight while rows are sent
    (its full collections scan what the import holds), and back in it afterwards."""
    frozen = freeze_counts_per_batch(monkeypatch)
    assert customers(sample.customers_csv).exit_code == 0
    assert purchases(sample.purchases_csv, "--batch-size", "100").exit_code == 0
    assert frozen and min(frozen) > 10_000  # the CLI's modules, the store, …
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("keep_checkpoint", [True, False])
def test_an_interrupted_import_resumes_without_duplicates(
    database: str, sample: Sample, monkeypatch: pytest.MonkeyPatch, keep_checkpoint: bool
) -> None:
    assert customers(sample.customers_csv).exit_code == 0
    with monkeypatch.context() as patch:
        interrupt_after(patch, 4, KeyboardInterrupt())
        stopped = purchases(sample.purchases_csv, "--batch-size", "25")
    assert stopped.exit_code == 130 and "run the same command again" in said(stopped)
    checkpoint = sample.purchases_csv.with_name("purchases.csv.result.csv.checkpoint")
    assert checkpoint.exists()
    assert sum(recorded(database).values()) == 100
    if not keep_checkpoint:  # correctness does not depend on it: every row is sent again
        checkpoint.unlink()
    resumed = purchases(sample.purchases_csv, "--batch-size", "25")
    assert resumed.exit_code == 0, resumed.output
    assert ("resuming after line 101" in resumed.output) is keep_checkpoint
    summary = "300 imported, 0 unchanged" if keep_checkpoint else "200 imported, 100 unchanged"
    assert summary in resumed.output
    outcomes = Counter(row["outcome"] for row in results(sample.purchases_csv))
    assert outcomes == {"imported": 300} if keep_checkpoint else {"imported": 200, "unchanged": 100}
    assert [int(row["line"]) for row in results(sample.purchases_csv)] == list(range(2, 302))
    assert recorded(database) == expected(sample, results(sample.customers_csv))
    assert not checkpoint.exists()


def test_an_import_stopped_by_an_error_says_how_to_resume(
    database: str, sample: Sample, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert customers(sample.customers_csv).exit_code == 0
    with monkeypatch.context() as patch:
        interrupt_after(patch, 1, RuntimeError("the database went away"))
        stopped = purchases(sample.purchases_csv, "--batch-size", "100")
    assert stopped.exit_code == 3
    assert "the database went away" in said(stopped) and "resume" in said(stopped)
    resumed = purchases(sample.purchases_csv, "--batch-size", "100")
    assert resumed.exit_code == 0 and "resuming after line 101" in resumed.output
    assert recorded(database) == expected(sample, results(sample.customers_csv))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--timezone", "Mars/Olympus"), "not an IANA time zone"),
        (("--map", "Date"), "must be SOURCE=FIELD"),
        (("--map", "Date=when"), "'when' is not a field of purchases"),
        (("--format", "xml"), "must be csv or jsonl"),
    ],
)
def test_bad_options_refuse_before_anything_is_imported(
    database: str, sample: Sample, args: tuple[str, ...], message: str
) -> None:
    done = run("purchases", sample.purchases_csv, "--system", "shop", *args)
    assert done.exit_code == 2 and message in said(done), done.output
    assert head(database) == 0


def test_rejected_rows_are_listed_in_the_result_file_and_the_rest_imported(
    database: str, tmp_path: Path
) -> None:
    people = tmp_path / "people.jsonl"
    people.write_text(
        '{"name": "Ada", "external_id": "1", "occurred_at": "1990-01-01"}\n'
        '{"name": "Bo", "external_id": "2", "email": "not-an-email"}\n'
        '{"name": "Cy", "external_id": "3", "occurred_at": "1990-02-30"}\n'
    )
    done = run("customers", people, "--system", "crm", "--timezone", "Europe/Berlin")
    assert done.exit_code == 1
    assert "1 imported, 0 unchanged, 2 rejected" in done.output
    assert "line 2: email" in said(done) and "line 3: occurred_at" in said(done)
    rows = results(people)
    assert [(r["line"], r["outcome"], r["external_id"], r["code"]) for r in rows] == [
        ("1", "imported", "1", ""),
        ("2", "rejected", "2", "validation"),
        ("3", "rejected", "3", "validation"),
    ]
    assert rows[2]["problem"].startswith("occurred_at: '1990-02-30' is not a valid date")
