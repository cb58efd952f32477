"""The result file of an import, and the checkpoint that lets an interrupted one resume.

The **result file** (CSV, UTF-8) has one row per data row of the input, in input order:
``line, outcome, customer_id, system, external_id, order_id, code, problem,
possible_duplicates`` — ``outcome`` is ``imported`` (something was recorded), ``unchanged`` (all
of it was there already: a second import, or a row a crashed run had sent) or ``rejected``
(nothing of the row was recorded; ``code`` and ``problem`` say why, e.g. ``validation`` /
``amount: must be …``). ``possible_duplicates`` (customer imports): the live customers, or
customers registered earlier in the same file, the new customer probably duplicates, as
``customer_id:probability`` separated by spaces, most probable first (it was registered all the
same: ``GET /v1/duplicates`` lists the pair once scanned).

The **checkpoint** (``RESULT.checkpoint``, JSON) is written after committed batches, at most
once a second (a file replaced per batch cost as much as 5 µs a row), and when an import
stops: the input's SHA-256, the options that shape commands, the last line done, the result
file's size and the counts. An import of the same file with the same options and result file resumes after
that line (the result file is cut back to that size); a finished import removes it. Nothing
depends on it for correctness: re-sending rows changes nothing (see :mod:`api.cli.importing.rows`),
so a lost or stale checkpoint only costs time.
"""

from __future__ import annotations

import csv
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import orjson

COLUMNS = (
    "line",
    "outcome",
    "customer_id",
    "system",
    "external_id",
    "order_id",
    "code",
    "problem",
    "possible_duplicates",
)
WRITTEN = len(COLUMNS)
EXAMPLES = 5


class Result(NamedTuple):
    """One line of the result file (``field``: where a rejection's problem lies, not written)."""

    line: int
    outcome: str
    customer_id: str = ""
    system: str = ""
    external_id: str = ""
    order_id: str = ""
    code: str = ""
    problem: str = ""
    possible_duplicates: str = ""
    field: str = ""


@dataclass
class Tally:
    """How many rows had each outcome, and the rejections by code and field."""

    outcomes: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    examples: list[tuple[int, str]] = field(default_factory=list)  # the first rejections

    @property
    def rows(self) -> int:
        return sum(self.outcomes.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcomes": dict(self.outcomes),
            "problems": dict(self.problems),
            "examples": self.examples,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Tally:
        examples = [(int(line), str(problem)) for line, problem in doc["examples"]]
        return cls(Counter(doc["outcomes"]), Counter(doc["problems"]), examples)

    def add(self, result: Result) -> None:
        self.outcomes[result.outcome] += 1
        if result.outcome == "rejected":
            self.problems[f"{result.code} ({result.field})" if result.field else result.code] += 1
            if len(self.examples) < EXAMPLES:
                self.examples.append((result.line, result.problem))


class Journal:
    """Writes results and checkpoints; knows where a resumed import starts."""

    def __init__(
        self, path: Path, identity: dict[str, Any], *, resume: bool = True, every: float = 1.0
    ) -> None:
        self.path = path
        self.every = every
        self.checkpoint_path = path.with_name(path.name + ".checkpoint")
        self.identity = identity
        self.after_line = 0
        self.tally = Tally()
        self.stale = False  # a checkpoint of another file or other options was found
        self._saved_at = time.monotonic()
        saved = self._saved() if resume else None
        if saved is not None:
            self.after_line = int(saved["line"])
            self.tally = Tally.from_dict(saved["tally"])
            self._file: TextIO = path.open("r+", encoding="utf-8", newline="")
            self._file.truncate(int(saved["result_bytes"]))
            self._file.seek(0, os.SEEK_END)
        else:
            self._file = path.open("w", encoding="utf-8", newline="")
        self._last_line = self.after_line
        self._writer = csv.writer(self._file)
        if saved is None:
            self._writer.writerow(COLUMNS)

    def _saved(self) -> dict[str, Any] | None:
        """The checkpoint, if it belongs to this import and its result file is intact."""
        try:
            saved: dict[str, Any] = orjson.loads(self.checkpoint_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError):
            self.stale = True
            return None
        if saved.get("identity") != self.identity:
            self.stale = True
            return None
        try:
            if self.path.stat().st_size < int(saved["result_bytes"]):
                self.stale = True
                return None
        except (OSError, KeyError, TypeError, ValueError):
            self.stale = True
            return None
        return saved

    @property
    def resumed(self) -> bool:
        return self.after_line > 0

    def record(self, results: list[Result], last_line: int) -> None:
        """Write a committed batch's results; at most every ``every`` seconds (and at the end),
        flush them and write the checkpoint after ``last_line``."""
        for result in results:
            self.tally.add(result)
        self._writer.writerows(result[:WRITTEN] for result in results)
        self._last_line = last_line
        if time.monotonic() - self._saved_at >= self.every:
            self.save()

    def save(self) -> None:
        """Flush the results so far and write the checkpoint (replacing the previous one)."""
        self._file.flush()
        document = {
            "identity": self.identity,
            "line": self._last_line,
            "result_bytes": os.fstat(self._file.fileno()).st_size,
            "tally": self.tally.to_dict(),
        }
        temporary = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        temporary.write_bytes(orjson.dumps(document))
        temporary.replace(self.checkpoint_path)
        self._saved_at = time.monotonic()

    def finish(self) -> None:
        """The import went through: close the result file and forget the checkpoint."""
        self._file.close()
        self.checkpoint_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop (interrupted or failed) after the last recorded batch: the checkpoint stays
        for the next run."""
        self.save()
        self._file.close()
