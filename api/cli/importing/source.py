"""Reading an import file: checked whole first, then streamed row by row.

:func:`open_source` reads the file once, line by line (never whole into memory), and refuses
it (:class:`InvalidInput` on ``file``, ``header`` or ``--map``: nothing is imported) unless it
is UTF-8 (a BOM is fine; UTF-16 and UTF-32 are refused as such) without NUL bytes and

* CSV: parses as CSV, and its header names each field of the kind once (see
  :mod:`api.cli.importing.fields`), with the kind's required fields;
* JSON Lines: every non-blank line is one JSON object whose keys are fields of the kind
  (``customer_ref``, ``external_ids`` and ``attributes`` may be objects: their keys become
  ``customer_ref.id`` and so on), and the keys of the file together provide what CSV's header
  must.

The same pass gives the file's SHA-256 (its identity for resuming) and its number of rows (for
the progress bar). :meth:`Source.records` then reads it again, one row at a time.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from api.cli.importing.fields import Naming
from domain.errors import InvalidInput
from domain.text_policy import trim
from infra.json_values import wide_encoding

Format = Literal["csv", "jsonl"]
FORMATS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
OBJECT_KEYS = frozenset({"customer_ref", "external_ids", "attributes"})
Values = dict[str, Any]
"""One row: field → value (CSV: text; JSON Lines: the JSON value). Blank values are absent."""


def file_format(path: Path, given: str | None) -> Format:
    """``given`` (``csv``/``jsonl``), else from the name's suffix; :class:`InvalidInput` if
    neither tells."""
    if given is not None:
        if given not in ("csv", "jsonl"):
            raise InvalidInput("--format", f"{given!r} must be csv or jsonl")
        return "csv" if given == "csv" else "jsonl"
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise InvalidInput(
            "file", f"cannot tell the format of {path.name!r}: name it .csv or .jsonl, or --format"
        )
    return found


def _lines(stream: BinaryIO, digest: Any = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of each physical line, checked for UTF-8 and NUL bytes."""
    offset = 0
    for number, raw in enumerate(stream, start=1):
        if digest is not None:
            digest.update(raw)
        wide = wide_encoding(raw) if number == 1 else None
        if wide is not None:
            raise InvalidInput("file", f"is not UTF-8 but {wide}: save it as UTF-8")
        chunk = raw[3:] if number == 1 and raw.startswith(b"\xef\xbb\xbf") else raw
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as error:
            where = offset + len(raw) - len(chunk) + error.start
            raise InvalidInput("file", f"line {number} is not UTF-8 (byte {where})") from None
        if "\x00" in text:
            raise InvalidInput("file", f"line {number} contains a NUL byte")
        offset += len(raw)
        yield number, text


class _Numbered:
    """The text lines of a stream for :mod:`csv`, remembering the last physical line number."""

    def __init__(self, lines: Iterator[tuple[int, str]]) -> None:
        self.lines = lines
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        for number, text in self.lines:
            self.number = number
            yield text


def _flatten(doc: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        if isinstance(value, dict) and key.strip().casefold() in OBJECT_KEYS:
            for inner, item in value.items():
                yield f"{key}.{inner}", item
        else:
            yield key, value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not trim(value))


@dataclass
class Source:
    """A file that passed the whole-file checks."""

    path: Path
    format: Format
    naming: Naming
    digest: str
    rows: int
    columns: list[str | None] = field(default_factory=list)  # CSV: the field of each column
    keys: dict[str, str | None] = field(default_factory=dict)  # JSON Lines: key → field

    def records(self) -> Iterator[tuple[int, Values | InvalidInput]]:
        """(line, values) of every data row in file order, or the problem that makes the row
        unreadable (a CSV row with another number of cells than the header); blank lines are
        skipped. CSV rows report their last physical line (a quoted cell may span lines)."""
        with self.path.open("rb") as stream:
            if self.format == "csv":
                yield from self._csv_rows(stream)
            else:
                yield from self._json_rows(stream)

    def _csv_rows(self, stream: BinaryIO) -> Iterator[tuple[int, Values | InvalidInput]]:
        lines = _Numbered(_lines(stream))
        reader = csv.reader(lines, strict=True)
        next(reader)
        columns, width = self.columns, len(self.columns)
        for cells in reader:
            if not cells:
                continue
            if len(cells) != width:
                problem = InvalidInput("row", f"has {len(cells)} cells, the header {width}")
                yield lines.number, problem
                continue
            yield (
                lines.number,
                {f: c for f, c in zip(columns, cells, strict=True) if f and c and not c.isspace()},
            )

    def _json_rows(self, stream: BinaryIO) -> Iterator[tuple[int, Values | InvalidInput]]:
        keys = self.keys
        for number, text in _lines(stream):
            if not text.strip():
                continue
            try:
                doc = orjson.loads(text)
                values = {f: v for k, v in _flatten(doc) if (f := keys[k]) and not _blank(v)}
            except (orjson.JSONDecodeError, AttributeError, KeyError):
                raise InvalidInput("file", f"line {number} changed since it was checked") from None
            yield number, values


def open_source(path: Path, naming: Naming, given_format: str | None = None) -> Source:
    """Check ``path`` whole (see the module docstring) and return it ready to stream."""
    kind = file_format(path, given_format)
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        lines = _lines(stream, digest)
        if kind == "csv":
            source = _check_csv(path, naming, lines)
        else:
            source = _check_json(path, naming, lines)
        for _ in lines:  # a CSV error ends the reading early; hash what is left
            pass
    source.digest = digest.hexdigest()
    return source


def _check_csv(path: Path, naming: Naming, lines: Iterator[tuple[int, str]]) -> Source:
    numbered = _Numbered(lines)
    reader = csv.reader(numbered, strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise InvalidInput("file", "is empty or has no header row")
        columns = []
        for number, cell in enumerate(header, start=1):
            if not cell.strip():
                raise InvalidInput("header", f"column {number} has no name")
            columns.append(naming.field(cell))
        naming.check(columns, header)
        rows = sum(1 for cells in reader if cells)
    except csv.Error as error:
        raise InvalidInput("file", f"line {numbered.number} is not valid CSV: {error}") from None
    return Source(path, "csv", naming, "", rows, columns=columns)


def _check_json(path: Path, naming: Naming, lines: Iterator[tuple[int, str]]) -> Source:
    keys: dict[str, str | None] = {}
    provided: set[str] = set()
    rows = 0
    for number, text in lines:
        if not text.strip():
            continue
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            raise InvalidInput("file", f"line {number} is not valid JSON: {error}") from None
        if not isinstance(doc, dict):
            raise InvalidInput("file", f"line {number} is not a JSON object")
        here: dict[str, str] = {}  # field → the key of this object that gave it
        for key, value in _flatten(doc):
            if key not in keys:
                try:
                    keys[key] = naming.field(key)
                except InvalidInput as error:
                    raise InvalidInput("file", f"line {number}: {error.reason}") from None
            placed = keys[key]
            if placed is None:
                continue
            if here.setdefault(placed, key) != key:
                raise InvalidInput(
                    "file", f"line {number}: keys {here[placed]!r} and {key!r} are both {placed!r}"
                )
            if not _blank(value):
                provided.add(placed)
        rows += 1
    if not rows:
        raise InvalidInput("file", "has no JSON object")
    naming.check_renames(keys)
    naming.check_needs(provided)
    return Source(path, "jsonl", naming, "", rows, keys=keys)
