"""CSV import through the batch (group-commit) path.

A file is checked whole before anything is imported: it must be UTF-8 (a BOM is fine) without
NUL bytes, parse as CSV, and have a header that names each column once — matched after trimming
and case-folding, so ``Name, Email`` is ``name,email`` — with the kind's required columns and no
column it cannot place. A file failing any of this is refused as a whole (:class:`InvalidInput`
on ``file`` or ``header``), so nothing is half-imported.

Every row then becomes commands with idempotency keys derived from the file's content and the
row's line, so importing the same file twice changes nothing. Bad rows are reported with their
line number and never half-applied; good rows are committed in batches.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from commands import messages as m
from commands.service import CommandService, Context
from domain.errors import DomainError, InvalidInput
from domain.values import ATTRIBUTE_KEY, MAX_TAGS_PER_CUSTOMER, normalise_tag

IMPORT_NAMESPACE = UUID("a4d3c1f2-6b7e-5f80-9c1d-2e3f4a5b6c7d")
CUSTOMER_COLUMNS = {"customer_id", "name", "email", "phone", "source", "lifecycle_stage"}
PURCHASE_COLUMNS = ("customer_id", "order_id", "amount", "currency", "occurred_at")


@dataclass(frozen=True)
class Kind:
    """What one kind of file needs: required and known columns, and how a row becomes commands.

    ``attributes``: other columns are custom attributes (named like attribute keys)."""

    required: frozenset[str]
    known: frozenset[str]
    attributes: bool
    build: Callable[[dict[str, str], UUID], list[dict[str, Any]]]


@dataclass
class ImportReport:
    accepted: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.accepted + self.unchanged + len(self.rejected)


def _customer_row(row: dict[str, str], row_id: UUID) -> list[dict[str, Any]]:
    """A registration, then one tag command per ``;``-separated tag (checked up front)."""
    doc: dict[str, Any] = {"type": "register", "customer_id": str(row_id), "attributes": {}}
    tags: list[str] = []
    for column, raw in row.items():
        value = raw.strip()
        if column in CUSTOMER_COLUMNS:
            if value:
                doc[column] = value
        elif column == "tags":
            tags = [normalise_tag(tag) for tag in value.split(";") if tag.strip()]
        elif value:
            doc["attributes"][column] = value
    if len(tags) > MAX_TAGS_PER_CUSTOMER:
        raise InvalidInput("tags", f"at most {MAX_TAGS_PER_CUSTOMER} tags")
    customer_id = doc["customer_id"]
    return [doc, *({"type": "tag", "customer_id": customer_id, "tag": tag} for tag in tags)]


def _purchase_row(row: dict[str, str], _: UUID) -> list[dict[str, Any]]:
    doc: dict[str, Any] = {"type": "purchase"}
    for column in PURCHASE_COLUMNS:
        value = row.get(column, "").strip()
        if value:
            doc[column] = value
    return [doc]


KINDS: dict[str, Kind] = {
    "customers": Kind(
        frozenset({"name"}), frozenset(CUSTOMER_COLUMNS | {"tags"}), True, _customer_row
    ),
    "purchases": Kind(
        frozenset(PURCHASE_COLUMNS) - {"occurred_at"},
        frozenset(PURCHASE_COLUMNS),
        False,
        _purchase_row,
    ),
}


@dataclass(frozen=True)
class CsvFile:
    """A file that passed the whole-file checks: its text, digest, columns and row count."""

    kind: Kind
    text: str
    digest: str
    columns: list[str]
    rows: int

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """(line, cells) of every data row; blank lines are skipped."""
        reader = csv.reader(io.StringIO(self.text, newline=""), strict=True)
        next(reader)
        for cells in reader:
            if cells:
                yield reader.line_num, cells


def _decode(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise InvalidInput("file", f"line {line} is not UTF-8 (byte {error.start})") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise InvalidInput("file", f"line {line} contains a NUL byte")
    return text


def _header(kind: Kind, cells: list[str]) -> list[str]:
    """Header cells trimmed and case-folded, each a column the kind can place, none twice."""
    columns = [cell.strip().casefold() for cell in cells]
    for number, column in enumerate(columns, start=1):
        if not column:
            raise InvalidInput("header", f"column {number} has no name")
        if columns.index(column) != number - 1:
            first = columns.index(column) + 1
            raise InvalidInput("header", f"columns {first} and {number} are both {column!r}")
        if column not in kind.known and not (kind.attributes and ATTRIBUTE_KEY.match(column)):
            known = ", ".join(sorted(kind.known))
            also = "; other columns become attributes (a-z, 0-9, _)" if kind.attributes else ""
            raise InvalidInput("header", f"unknown column {column!r} (known: {known}{also})")
    missing = sorted(kind.required - set(columns))
    if missing:
        raise InvalidInput("header", f"missing required column(s): {', '.join(missing)}")
    return columns


def read_csv(kind: str, path: Path) -> CsvFile:
    """Read and check a whole file (see the module docstring); :class:`InvalidInput` if refused."""
    spec = KINDS[kind]
    raw = path.read_bytes()
    text = _decode(raw)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise InvalidInput("file", "is empty or has no header row")
        columns = _header(spec, header)
        rows = sum(1 for cells in reader if cells)
    except csv.Error as error:
        raise InvalidInput("file", f"line {reader.line_num} is not valid CSV: {error}") from None
    return CsvFile(spec, text, hashlib.sha256(raw).hexdigest()[:16], columns, rows)


def import_rows(
    service: CommandService,
    file: CsvFile,
    *,
    actor: str = "csv-import",
    batch_size: int = 500,
    on_progress: Callable[[int], None] = lambda _: None,
) -> ImportReport:
    """Import the rows of a checked file; returns what happened to each."""
    context = Context(actor=actor, correlation_id=f"import-{file.digest}")
    report = ImportReport()
    pending: list[tuple[int, list[m.Command]]] = []

    def flush() -> None:
        outcomes = iter(service.execute_batch([c for _, row in pending for c in row], context))
        for line, commands in pending:
            results = [next(outcomes) for _ in commands]
            problem = next((r.problem for r in results if r.problem is not None), None)
            if problem is not None:
                report.rejected.append((line, problem.details.get("field", ""), problem.message))
            elif all(r.replayed for r in results):
                report.unchanged += 1
            else:
                report.accepted += 1
        on_progress(len(pending))
        pending.clear()

    for line, cells in file.records():
        try:
            if len(cells) != len(file.columns):
                raise InvalidInput("row", f"has {len(cells)} cells, the header {len(file.columns)}")
            row = dict(zip(file.columns, cells, strict=True))
            docs = file.kind.build(row, uuid5(IMPORT_NAMESPACE, f"{file.digest}:{line}"))
            commands = [
                m.parse_command({**doc, "idempotency_key": f"import:{file.digest}:{line}:{i}"})
                for i, doc in enumerate(docs)
            ]
        except DomainError as error:
            report.rejected.append((line, error.details.get("field", ""), error.message))
            on_progress(1)
            continue
        pending.append((line, commands))
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    return report


def import_csv(
    service: CommandService,
    kind: str,
    path: Path,
    *,
    actor: str = "csv-import",
    batch_size: int = 500,
    on_progress: Callable[[int], None] = lambda _: None,
) -> ImportReport:
    """Check ``path`` whole, then import its ``customers`` or ``purchases`` rows."""
    file = read_csv(kind, path)
    return import_rows(service, file, actor=actor, batch_size=batch_size, on_progress=on_progress)
