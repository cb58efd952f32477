"""Import files: whole-file checks, header mapping, dates in a time zone, streaming, journal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.cli.importing.fields import (
    CUSTOMERS,
    PURCHASES,
    Kind,
    Naming,
    parse_renames,
    read_moment,
    zone,
)
from api.cli.importing.journal import COLUMNS, Journal, Result
from api.cli.importing.source import open_source
from domain.errors import InvalidInput


def naming(kind: Kind = PURCHASES, *pairs: str, system: str | None = "shop") -> Naming:
    return Naming(kind, parse_renames(pairs, kind), system)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def refused(path: Path, names: Naming) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        open_source(path, names)
    return caught.value


def test_headers_match_ignoring_case_and_spaces_and_map_renames_or_skips(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "orders.csv",
        " External ID ,Invoice Date,AMOUNT,Currency,Description\n"
        "42,1997-01-01,12.50,usd,Mug\n\n"
        '43,1997-01-02,"3.00",EUR,"two\nlines"\n',
    )
    source = open_source(path, naming(PURCHASES, "invoice date=occurred_at", "Description=-"))
    assert source.columns == ["customer_ref.id", "occurred_at", "amount", "currency", None]
    assert source.rows == 2
    assert list(source.records()) == [
        (
            2,
            {
                "customer_ref.id": "42",
                "occurred_at": "1997-01-01",
                "amount": "12.50",
                "currency": "usd",
            },
        ),
        (
            5,
            {
                "customer_ref.id": "43",
                "occurred_at": "1997-01-02",
                "amount": "3.00",
                "currency": "EUR",
            },
        ),
    ]
    assert len(source.digest) == 64


@pytest.mark.parametrize(
    ("header", "pairs", "system", "problem"),
    [
        ("external_id,amount,currency,colour", (), "shop", "unknown column 'colour'"),
        ("external_id,amount,currency,colour", (), "shop", "--map colour=-"),
        ("external_id,Amount, amount ,currency", (), "shop", "columns 2 and 3 are both 'amount'"),
        ("external_id,customer_ref.id,amount,currency", (), "shop", "both 'customer_ref.id'"),
        ("external_id,amount", (), "shop", "missing required column(s): currency"),
        ("amount,currency", (), "shop", "customer_id or external_id"),
        ("external_id,amount,currency", (), None, "need --system"),
        ("customer_id,customer_ref.system,amount,currency", (), None, "needs a customer_ref.id"),
        ("external_id,amount,currency", ("price=amount",), "shop", "no column 'price'"),
        ("external_id,,amount,currency", (), "shop", "column 2 has no name"),
    ],
)
def test_a_header_that_cannot_be_placed_refuses_the_file(
    tmp_path: Path, header: str, pairs: tuple[str, ...], system: str | None, problem: str
) -> None:
    path = write(tmp_path, "orders.csv", f"{header}\n42,1.00,EUR,x\n")
    assert problem in refused(path, naming(PURCHASES, *pairs, system=system)).message


@pytest.mark.parametrize(
    ("pair", "problem"),
    [("amount", "must be SOURCE=FIELD"), ("a=colour", "not a field of purchases"), ("=amount", "")],
)
def test_bad_map_options_are_refused(pair: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_renames([pair], PURCHASES)
    assert caught.value.field == "--map" and problem in caught.value.message
    with pytest.raises(InvalidInput, match="mapped twice"):
        parse_renames(["a=amount", " A =currency"], PURCHASES)


def test_customer_columns_land_on_fields_families_and_attributes() -> None:
    names = naming(CUSTOMERS, "Shop No=external_ids.shop", system=None)
    assert [names.field(c) for c in ("Shop No", "City", "attributes.tier", "EXTERNAL_IDS.crm")] == [
        "external_ids.shop",
        "attributes.city",
        "attributes.tier",
        "external_ids.crm",
    ]
    with pytest.raises(InvalidInput, match="unknown column 'ünknown'"):
        names.field("Ünknown")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "no header row"),
        (b"external_id,amount,currency\n1,2,EUR\n\xff\n", "line 3 is not UTF-8 (byte 36)"),
        (b"external_id,amount,currency\n1,2\x00,EUR\n", "line 2 contains a NUL byte"),
        (b'external_id,amount,currency\n1,"2,EUR\n', "line 2 is not valid CSV"),
    ],
)
def test_a_file_that_is_not_clean_csv_is_refused_with_its_line(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    assert problem in refused(write(tmp_path, "x.csv", content), naming()).message


def test_a_bom_is_fine_and_a_row_of_another_width_is_a_row_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", "\ufeffexternal_id,amount,currency\n1,2.00,EUR\n3,4.00\n")
    records = list(open_source(path, naming()).records())
    assert records[0] == (2, {"customer_ref.id": "1", "amount": "2.00", "currency": "EUR"})
    line, problem = records[1]
    assert line == 3 and isinstance(problem, InvalidInput)
    assert problem.message == "row: has 2 cells, the header 3"


def test_json_lines_flatten_known_objects_keep_json_types_and_skip_blanks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "people.jsonl",
        '{"Name": "Ada", "external_ids": {"shop": "42"}, "attributes": {"vip": true}, "city": null}\n'
        "\n"
        '{"name": "Bo", "customer_ref": {"system": "crm", "id": "7"}, "tags": ["a", "b"], "age": 7}\n',
    )
    source = open_source(path, naming(CUSTOMERS, system=None))
    assert (source.format, source.rows) == ("jsonl", 2)
    assert list(source.records()) == [
        (1, {"name": "Ada", "external_ids.shop": "42", "attributes.vip": True}),
        (
            3,
            {
                "name": "Bo",
                "customer_ref.system": "crm",
                "customer_ref.id": "7",
                "tags": ["a", "b"],
                "attributes.age": 7,
            },
        ),
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"name": "Ada"}\n{"name": \n', "line 2 is not valid JSON"),
        ('{"name": "Ada"}\n["Bo"]\n', "line 2 is not a JSON object"),
        ('{"name": "Ada"}\n{"name": "Bo", "Bad Key!": 1}\n', "line 2: unknown column 'bad_key!'"),
        ('{"name": "Ada", "Name": "Ada"}\n', "line 1: keys 'name' and 'Name' are both 'name'"),
        ('{"email": "a@example.com"}\n', "missing required column(s): name"),
        ("\n\n", "has no JSON object"),
    ],
)
def test_json_lines_are_checked_whole(tmp_path: Path, content: str, problem: str) -> None:
    assert problem in refused(write(tmp_path, "p.jsonl", content), naming(CUSTOMERS)).message


def test_the_format_comes_from_the_suffix_or_the_option(tmp_path: Path) -> None:
    path = write(tmp_path, "export.txt", '{"name": "Ada"}\n')
    assert "cannot tell the format" in refused(path, naming(CUSTOMERS)).message
    assert open_source(path, naming(CUSTOMERS), "jsonl").rows == 1


@pytest.mark.parametrize(
    ("text", "where", "expected"),
    [
        ("1997-01-31", "UTC", "1997-01-31T00:00:00+00:00"),
        ("1997-01-31", "Europe/Berlin", "1997-01-30T23:00:00+00:00"),
        (" 1997-07-31 14:05 ", "Europe/Berlin", "1997-07-31T12:05:00+00:00"),
        ("1997-01-31T14:05:07.25", "America/New_York", "1997-01-31T19:05:07.250000+00:00"),
        ("1997-01-31T14:05:07+02:00", "America/New_York", "1997-01-31T12:05:07+00:00"),
        ("1997-01-31 14:05:07Z", "Europe/Berlin", "1997-01-31T14:05:07+00:00"),
    ],
)
def test_dates_and_local_times_are_read_in_the_time_zone(
    text: str, where: str, expected: str
) -> None:
    assert read_moment(text, zone(where)).isoformat() == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("31/01/1997", "must be a date (1997-01-31)"),
        ("1997-02-30", "not a valid date"),
        ("1997-03-30 02:30", "does not exist in Europe/Berlin"),
        ("1997-10-26 02:30", "happens twice in Europe/Berlin"),
        ("1997-01-31T14:05:07-00:00", "unknown"),
        ("1899-12-31", "before 1900"),
    ],
)
def test_times_that_are_ambiguous_or_wrong_are_refused(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        read_moment(text, zone("Europe/Berlin"))
    assert caught.value.field == "occurred_at" and problem in caught.value.message
    with pytest.raises(InvalidInput, match="not an IANA time zone"):
        zone("Mars/Olympus")
    assert read_moment("2000-01-01", zone("utc")) == datetime(2000, 1, 1, tzinfo=UTC)


def test_the_journal_resumes_after_its_checkpoint_and_forgets_a_stale_one(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    identity = {"file": "abc", "kind": "purchases"}
    first = Journal(path, identity, every=0)
    first.record(
        [Result(2, "imported", "c1"), Result(3, "rejected", code="validation", field="amount")], 3
    )
    first.record([Result(4, "imported", "c2")], 4)
    first.close()
    checkpoint = path.with_name("r.csv.checkpoint")
    saved = checkpoint.read_bytes()
    with path.open("a") as extra:  # a batch written after the last checkpoint: dropped
        extra.write("5,imported,c3,,,,,,\n")
    again = Journal(path, identity, every=0)
    assert (again.resumed, again.after_line, again.tally.rows) == (True, 4, 3)
    assert again.tally.problems == {"validation (amount)": 1}
    again.record([Result(5, "unchanged", "c3")], 5)
    again.finish()
    assert not checkpoint.exists()
    assert path.read_text().splitlines()[1:] == [
        "2,imported,c1,,,,,,",
        "3,rejected,,,,,validation,,",
        "4,imported,c2,,,,,,",
        "5,unchanged,c3,,,,,,",
    ]
    checkpoint.write_bytes(saved)
    other = Journal(path, {**identity, "file": "def"})  # another file: start over
    assert (other.resumed, other.stale) == (False, True)
    other.close()
    assert path.read_text().splitlines() == [",".join(COLUMNS)]
    checkpoint.write_bytes(saved)  # the result file is shorter than the checkpoint says
    short = Journal(path, identity)
    assert (short.resumed, short.stale) == (False, True)
    short.close()
