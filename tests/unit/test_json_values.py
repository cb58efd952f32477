"""Why a record value is not one UTF-8 JSON object (:mod:`infra.json_values`): each kind of bad
message on the inbound topics gets its own reason, for commands and envelopes alike."""

from __future__ import annotations

import codecs
import re

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from consumers.ingest import UndecodableCommand, read_command
from infra.envelope import Envelope, EnvelopeError
from infra.json_values import NotJsonObject, json_object
from tests.fuzz_support import fuzz

COMMAND = {"type": "tag", "customer_id": "0b6e1d2c-55f7-4c1e-9a65-3f2b9c4a7d11", "tag": "vip"}
TEXT = orjson.dumps(COMMAND).decode()
KINDS = (
    "no value",
    "empty",
    "UTF-8 byte order mark",
    "UTF-16",
    "UTF-32",
    "not UTF-8",
    "truncated",
    "not JSON",
    "not a JSON object",
)

CASES = {
    "tombstone": (None, "no value (a tombstone)"),
    "empty": (b"", "empty: no JSON text"),
    "blank": (b" \r\n", "empty: no JSON text"),
    "utf-8 bom": (codecs.BOM_UTF8 + TEXT.encode(), "UTF-8 byte order mark"),
    "utf-16 bom": (TEXT.encode("utf-16"), "UTF-16 (byte order mark"),
    "utf-16-le": (TEXT.encode("utf-16-le"), "UTF-16 (NUL bytes"),
    "utf-16-be": (TEXT.encode("utf-16-be"), "UTF-16 (NUL bytes"),
    "utf-32 bom": (TEXT.encode("utf-32"), "UTF-32 (byte order mark"),
    "utf-32-be": (TEXT.encode("utf-32-be"), "UTF-32 (NUL bytes"),
    "latin-1": (TEXT.replace("vip", "café").encode("latin-1"), "not UTF-8: byte 0xe9 at offset"),
    "cp1252 quote": (b'{"tag": "\x93vip\x94"}', "not UTF-8: byte 0x93 at offset 9"),
    "truncated": (TEXT.encode()[:-7], "truncated: the JSON text ends inside a value"),
    "cut in a character": ('{"tag": "é'.encode()[:-1], "not UTF-8"),
    "trailing garbage": (TEXT.encode() + b"}", "not JSON: unexpected content"),
    "surrogate escape": (b'{"tag": "\\ud800"}', "not JSON: no low surrogate"),
    "array": (orjson.dumps([COMMAND]), "not a JSON object: a command must be an object, not an"),
    "string": (orjson.dumps(TEXT), "not a JSON object: a command must be an object, not a str"),
    "number": (b"42", "not a JSON object: a command must be an object, not a number"),
    "boolean": (b"true", "not a JSON object: a command must be an object, not a boolean"),
    "null": (b"null", "not a JSON object: a command must be an object, not null"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_kind_of_bad_value_has_its_own_reason(name: str) -> None:
    raw, reason = CASES[name]
    with pytest.raises(NotJsonObject) as refused:
        json_object(raw, "a command")
    assert str(refused.value).startswith(reason), str(refused.value)


@pytest.mark.parametrize("name", sorted(CASES))
def test_commands_and_envelopes_are_dead_lettered_with_that_reason(name: str) -> None:
    raw, reason = CASES[name]
    expected = reason.replace("a command", "an envelope")
    with pytest.raises(UndecodableCommand, match="^" + re.escape(reason)):
        read_command(raw, "kafka:customer.commands:0:1")
    with pytest.raises(EnvelopeError, match="^" + re.escape(expected)):
        Envelope.from_bytes(raw)


@fuzz(300)
@given(raw=st.binary(max_size=64) | st.text(max_size=20).map(lambda t: t.encode("utf-16")))
@example(raw=TEXT.encode("utf-16-le")[:-1])  # odd length
@example(raw=b"\x00")
def test_any_bytes_are_an_object_or_a_reason_of_a_known_kind(raw: bytes) -> None:
    try:
        doc = json_object(raw, "a command")
    except NotJsonObject as refused:
        assert str(refused).startswith(KINDS), str(refused)
    else:
        assert isinstance(doc, dict)


def test_a_utf8_object_is_read_as_it_is() -> None:
    assert json_object(TEXT.encode(), "a command") == COMMAND
    assert json_object(b' {"a": "\xc3\xa9"} \n', "a command") == {"a": "é"}
