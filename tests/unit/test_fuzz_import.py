"""Fuzzing the importer's reading of files (:func:`open_source`, :meth:`Source.records`,
:meth:`RowBuilder.build`) and the commands it makes: any CSV or JSON Lines content is refused
whole with an :class:`InvalidInput`, or each row becomes commands or a per-row problem, never
another exception."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hypothesis import event, example, given
from hypothesis import strategies as st

from api.cli.importing.fields import CUSTOMERS, KINDS, PURCHASES, Naming, zone
from api.cli.importing.rows import RowBuilder
from api.cli.importing.source import open_source
from commands.service import CommandService, Context
from domain.errors import DomainError, InvalidInput
from tests.fuzz_support import JSON_VALUES, fuzz

NAMES = [
    *sorted(CUSTOMERS.fields | PURCHASES.fields),
    *("customer_ref.id", "external_ids.shop", "attributes.city", "city", "Tags", " Name "),
]
NEEDS = {"customers": ["name"], "purchases": ["amount", "currency", "customer_ref.id"]}
"""Columns that let a file of the kind through the header checks (with ``--system``)."""


def _headers(kind: str) -> st.SearchStrategy[list[str]]:
    """Mostly a usable header (what the kind needs, more names in any order), else anything."""
    extra = st.lists(st.sampled_from(NAMES), max_size=4, unique=True)
    usable = extra.map(lambda names: [*NEEDS[kind], *(n for n in names if n not in NEEDS[kind])])
    anything = st.lists(st.sampled_from(NAMES) | st.text(max_size=12), min_size=1, max_size=6)
    return st.one_of(usable.flatmap(st.permutations), usable, anything)


CELLS = st.one_of(
    st.sampled_from(
        [
            "Ada",
            "ada@example.com",
            "+4915112345678",
            "12.50",
            "EUR",
            "2024-05-01 10:00",
            "2024-05-01T10:00:00+02:00",
            "vip;gold",
            "0b6e1d2c-55f7-4c1e-9a65-3f2b9c4a7d11",
            "x" * 100_000,
        ]
    ),
    st.text(max_size=30),  # control characters, unpaired surrogates (not UTF-8 in a file)
)


def _file(tmp: Path, suffix: str, content: bytes) -> Path:
    path = tmp / f"in{suffix}"
    path.write_bytes(content)
    return path


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text).writerows([header, *rows])
    return text.getvalue().encode("utf-8", "surrogatepass")


def _import(
    path: Path, kind: str, system: str | None, service: CommandService | None = None
) -> None:
    """Read ``path`` as the importer does; every row becomes commands or a problem."""
    naming = Naming(KINDS[kind], {}, system)
    try:
        source = open_source(path, naming)
    except InvalidInput as refused:
        assert refused.field in ("file", "header", "--map"), refused
        event(f"file refused: {refused.field}")
        return
    builder = RowBuilder(KINDS[kind], source.digest, system=system, zone=zone("Europe/Berlin"))
    for line, values in source.records():
        if isinstance(values, InvalidInput):
            assert values.field == "row"
            continue
        row = builder.build(line, values)
        assert row.commands or isinstance(row.problem, DomainError), row
        event("row refused" if row.problem else "row built")
        if row.problem is None and service is not None:  # the importer sends them next
            for outcome in service.execute_batch(row.commands, Context(actor="import")):
                event(f"outcome {outcome.status}")


@fuzz(150)
@given(kind=st.sampled_from(sorted(KINDS)), system=st.sampled_from(["shop", None]), data=st.data())
@example(kind="customers", system=None, data=[["name", "attributes.x"], ["\x00", "a"]])
@example(kind="customers", system=None, data=[["name"], ["\ud800"]])
@example(
    kind="purchases",
    system="shop",
    data=[["amount", "currency", "customer_ref.id"], ["1e999", "EUR", "7"], ["12.5", "\x1b", "7"]],
)
def test_csv_rows_are_outcomes_or_clean_refusals(
    tmp_path: Path, service: CommandService, kind: str, system: str | None, data: Any
) -> None:
    if isinstance(data, list):  # an explicit example: header and rows
        header, rows = data[0], data[1:]
    else:
        header = data.draw(_headers(kind))
        width = st.sampled_from([len(header)] * 4 + [len(header) + 1, 1])
        rows = data.draw(st.lists(width.flatmap(lambda n: st.lists(CELLS, min_size=n, max_size=n))))
    _import(_file(tmp_path, ".csv", _csv(header, rows)), kind, system, service)


@fuzz(150)
@given(kind=st.sampled_from(sorted(KINDS)), system=st.sampled_from(["shop", None]), data=st.data())
@example(kind="customers", system=None, data=[{"name": "A", "attributes": {"\ud800": 1}}])
@example(kind="customers", system="shop", data=[{"name": "A", "customer_ref": ["x"]}])
@example(
    kind="purchases",
    system="shop",
    data=[{"amount": 12.5, "currency": "EUR", "customer_ref.id": 7}],
)
@example(kind="customers", system=None, data=[{"name": "A", "tags": [1, None, {"a": 1}]}])
def test_json_lines_rows_are_outcomes_or_clean_refusals(
    tmp_path: Path, service: CommandService, kind: str, system: str | None, data: Any
) -> None:
    if isinstance(data, list):  # an explicit example: the objects
        docs = data
    else:
        names = data.draw(_headers(kind))
        values = CELLS | JSON_VALUES
        objects = st.fixed_dictionaries({}, optional={name: values for name in names})
        docs = data.draw(st.lists(objects | JSON_VALUES, min_size=1, max_size=4))
    content = "\n".join(json.dumps(doc) for doc in docs).encode()
    _import(_file(tmp_path, ".jsonl", content), kind, system, service)


@fuzz(150)
@given(
    kind=st.sampled_from(sorted(KINDS)), suffix=st.sampled_from([".csv", ".jsonl"]), raw=st.binary()
)
@example(kind="customers", suffix=".csv", raw=b'name\n"unterminated')
@example(kind="customers", suffix=".csv", raw=b"\xef\xbb\xbfname\r\nAda\r\n")
@example(kind="customers", suffix=".jsonl", raw=b'{"name": "A"}\n{"name": "\xff"}')
def test_arbitrary_bytes_are_imported_or_refused(
    tmp_path: Path, kind: str, suffix: str, raw: bytes
) -> None:
    _import(_file(tmp_path, suffix, raw), kind, "shop")
