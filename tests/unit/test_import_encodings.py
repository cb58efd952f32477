"""Import files in another encoding than UTF-8 are refused whole, saying which: UTF-16 and
UTF-32 by their byte order mark or NUL bytes (a UTF-16 file without a BOM used to be refused
as "line 1 contains a NUL byte"), Latin-1 and cp1252 by the first byte that is not UTF-8."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.cli.importing.fields import CUSTOMERS, Naming
from api.cli.importing.source import open_source
from domain.errors import InvalidInput
from tests.fuzz_support import fuzz

CSV = "name,email,attributes.city\nAda,ada@example.com,Köln\nGrace,grace@example.com,Zürich\n"
JSONL = '{"name": "Ada", "attributes": {"city": "Köln"}}\n{"name": "Grace"}\n'
WIDE = {
    "utf-16": "UTF-16 (byte order mark",
    "utf-16-le": "UTF-16 (NUL bytes",
    "utf-16-be": "UTF-16 (NUL bytes",
    "utf-32": "UTF-32 (byte order mark",
    "utf-32-le": "UTF-32 (NUL bytes",
    "utf-32-be": "UTF-32 (NUL bytes",
}


def _refusal(path: Path) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        open_source(path, Naming(CUSTOMERS, {}, None))
    assert refused.value.field == "file"
    return refused.value


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize("encoding", sorted(WIDE))
def test_a_utf16_or_utf32_file_is_refused_naming_its_encoding(
    tmp_path: Path, suffix: str, encoding: str
) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_bytes((CSV if suffix == ".csv" else JSONL).encode(encoding))
    assert f"is not UTF-8 but {WIDE[encoding]}" in str(_refusal(path))


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_a_latin1_file_is_refused_at_its_first_byte_that_is_not_utf8(
    tmp_path: Path, encoding: str
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(CSV.encode(encoding))
    assert "line 2 is not UTF-8 (byte 48)" in str(_refusal(path))


def test_utf8_with_or_without_a_bom_is_read(tmp_path: Path) -> None:
    for content in (CSV.encode(), b"\xef\xbb\xbf" + CSV.encode()):
        path = tmp_path / "in.csv"
        path.write_bytes(content)
        assert open_source(path, Naming(CUSTOMERS, {}, None)).rows == 2


@fuzz(100)
@given(
    names=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4),
    encoding=st.sampled_from(sorted(WIDE)),
    suffix=st.sampled_from([".csv", ".jsonl"]),
)
def test_any_file_in_a_wide_encoding_is_refused_as_such(
    tmp_path_factory: pytest.TempPathFactory, names: list[str], encoding: str, suffix: str
) -> None:
    rows = [f'{{"name": "{name}"}}' if suffix == ".jsonl" else f"x{name}" for name in names]
    header = [] if suffix == ".jsonl" else ["name"]
    text = "\n".join([*header, *rows]) + "\n"
    path = tmp_path_factory.mktemp("wide") / f"in{suffix}"
    path.write_bytes(text.encode(encoding, "surrogatepass"))
    assert f"is not UTF-8 but {WIDE[encoding]}" in str(_refusal(path))
