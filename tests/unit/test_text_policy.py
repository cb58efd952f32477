"""The text policy and the canonical forms of ``domain.values``: one place decides what text and
which values may be stored; accepted values are canonical (re-normalising changes nothing) and
storable by every backend, the rest is refused naming the field."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import text_policy as tp
from domain import values as v
from domain.errors import InvalidInput
from domain.payloads import normalise_attributes, normalise_items

# Every code point class the policy decides on, plus plain text around them.
ANY_CHAR = st.characters(exclude_categories=())  # surrogates included
ANY_TEXT = st.text(ANY_CHAR, max_size=12) | st.text(max_size=12)
REFUSED_EVERYWHERE = [
    "\x00",
    "\x07",
    "\x1b",
    "\x7f",
    "\x85",
    "\x9f",
    "\ud800",
    "\udfff",
    "\ufdd0",
    "\ufffe",
    "\U0010ffff",
    "\u202a",
    "\u202e",
    "\u206a",
]
REFUSED_IN_IDENTIFIERS = ["\u200b", "\u200d", "\u2066", "\u200e", "\ufeff", "\u00a0", "\ue000"]


def storable(text: str) -> bool:
    """What every backend can store and hand back unchanged."""
    try:
        orjson.loads(orjson.dumps(text))
    except (TypeError, orjson.JSONDecodeError):
        return False
    return "\x00" not in text


@pytest.mark.parametrize("char", REFUSED_EVERYWHERE)
@pytest.mark.parametrize("kind", list(tp.Text))
def test_characters_refused_in_every_kind_name_the_field_and_code_point(
    char: str, kind: tp.Text
) -> None:
    with pytest.raises(InvalidInput) as caught:
        tp.normalise_text("summary", f"ok{char}ok", kind=kind)
    assert caught.value.field == "summary"
    assert f"U+{ord(char):04X}" in caught.value.message and "character 3" in caught.value.message
    orjson.dumps(caught.value.to_dict())  # the problem document itself is encodable


@pytest.mark.parametrize("char", REFUSED_IN_IDENTIFIERS)
def test_invisible_characters_are_refused_in_identifiers_only(char: str) -> None:
    with pytest.raises(InvalidInput, match="order_id"):
        tp.normalise_identifier("order_id", f"A{char}1", max_length=100)
    assert tp.normalise_text("comment", f"A{char}1", kind=tp.Text.MULTILINE) == f"A{char}1"


def test_line_breaks_belong_to_free_text_only() -> None:
    assert tp.normalise_text("summary", " a\r\nb\rc\td ", kind=tp.Text.MULTILINE) == "a\nb\nc\td"
    for kind in (tp.Text.LINE, tp.Text.IDENTIFIER):
        for char in "\t\n\r\u2028\u2029":
            with pytest.raises(InvalidInput, match="one line"):
                tp.normalise_text("subject", f"a{char}b", kind=kind)
    assert v.normalise_name("Ada\n\tLovelace") == "Ada Lovelace"


def test_scripts_emoji_and_joiners_are_kept() -> None:
    for text in ["李 小龙", "مرحبا", "नमस्ते", "👩‍💻", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "Zoë", "\U0001f600"]:
        assert tp.normalise_text("comment", text, kind=tp.Text.MULTILINE) == text
        assert v.normalise_name(text) == text


@given(ANY_TEXT, st.sampled_from(list(tp.Text)))
def test_text_is_either_refused_or_storable_canonical_and_stable(text: str, kind: tp.Text) -> None:
    try:
        stored = tp.normalise_text("field", text, kind=kind)
    except InvalidInput as error:
        assert error.field == "field" and tp.text_problem(text, kind) is not None
        return
    assert tp.text_problem(text, kind) is None
    if stored is not None:
        assert storable(stored) and unicodedata.is_normalized("NFC", stored)
        assert tp.normalise_text("field", stored, kind=kind) == stored


@given(ANY_TEXT)
def test_keys_are_clean_as_sent_or_refused(text: str) -> None:
    try:
        assert tp.check_key("idempotency_key", text) == text
    except InvalidInput as error:
        assert error.field == "idempotency_key"
        return
    assert storable(text) and text == text.strip() and text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("C++", "c++"),
        ("C#", "c#"),
        ("日本", "日本"),
        ("数据", "数据"),
        ("Gold Member", "gold-member"),
        ("new_customer", "new-customer"),
        ("  a -- b  ", "a-b"),
        ("Node.js", "node.js"),
        ("R&D", "r&d"),
        ("Straße", "strasse"),
    ],
)
def test_tags_keep_their_meaning(raw: str, expected: str) -> None:
    assert v.normalise_tag(raw) == expected


@given(st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,4}", fullmatch=True))
def test_slugs_stored_by_earlier_versions_are_canonical(slug: str) -> None:
    assert v.normalise_tag(slug) == slug


@given(ANY_TEXT)
def test_tags_are_refused_or_canonical(raw: str) -> None:
    try:
        tag = v.normalise_tag(raw)
    except InvalidInput as error:
        assert error.field == "tag"
        return
    assert v.normalise_tag(tag) == tag and storable(tag) and len(tag) <= v.MAX_TAG_LENGTH
    assert all(unicodedata.category(c)[0] in "LMN" or c in "-+#&." for c in tag)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12.50", "12.50"), (" 7 ", "7"), ("007.50", "7.50"), ("0.0001", "0.0001"), ("0", "0")],
)
def test_amounts_print_in_the_schema_form(raw: str, expected: str) -> None:
    assert str(v.parse_amount(raw)) == expected
    assert str(v.parse_amount(Decimal(raw.strip()))) == expected


@pytest.mark.parametrize(
    "raw",
    ["1E+2", "1e2", "-0", "-1", "+5", ".5", "12.", "1,000", "1_000", "١٢", "NaN", "Infinity", ""],
)
def test_ambiguous_or_lossy_amounts_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="amount"):
        v.parse_amount(raw)


@pytest.mark.parametrize("raw", [12, 12.5, True, None, Decimal("-0"), Decimal("NaN")])
def test_amounts_must_be_decimal_strings(raw: object) -> None:
    with pytest.raises(InvalidInput, match="amount"):
        v.parse_amount(raw)


@given(st.decimals(min_value=0, max_value=Decimal("999999999999.9999"), places=4))
def test_every_accepted_amount_matches_the_schema_and_is_stable(amount: Decimal) -> None:
    text = format(amount, "f")
    parsed = v.parse_amount(text)
    assert parsed == amount and v.parse_amount(str(parsed)) == parsed
    assert str(parsed).replace(".", "", 1).isdigit()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-01T12:00:00Z", datetime(2024, 1, 1, 12, tzinfo=UTC)),
        ("2024-01-01T14:00:00+02:00", datetime(2024, 1, 1, 12, tzinfo=UTC)),
        ("2024-01-01 12:00:00.123456z", datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_timestamps_are_stored_in_utc(raw: str, expected: datetime) -> None:
    parsed = v.parse_timestamp("occurred_at", raw)
    assert parsed == expected and parsed.tzinfo is UTC
    assert v.parse_timestamp("occurred_at", parsed.isoformat()) == parsed


@pytest.mark.parametrize(
    "raw",
    [
        1_700_000_000,  # seconds or milliseconds?
        1_700_000_000_000,
        1.7e9,
        True,
        "1700000000",
        "2024-01-01",  # which time zone?
        "2024-01-01T12:00:00",  # naive
        "2024-01-01T12:00Z",  # no seconds
        "2024-01-01T12:00:00-00:00",  # RFC 3339: offset unknown
        "2024-01-01T12:00:00.1234567Z",  # finer than a microsecond: would be cut
        "2024-02-30T12:00:00Z",
        "1899-12-31T23:59:59Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "20240101T120000Z",
    ],
)
def test_ambiguous_or_lossy_timestamps_are_refused(raw: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        v.parse_timestamp("occurred_at", raw)
    assert caught.value.field == "occurred_at"


def test_aware_datetimes_from_code_are_converted_to_utc() -> None:
    local = datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    assert v.parse_timestamp("at", local) == datetime(2024, 1, 1, 12, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="time zone"):
        v.parse_timestamp("at", datetime(2024, 1, 1))


@pytest.mark.parametrize(
    "raw",
    [
        "+49 30 901820 abc",  # letters would dial as digits: +4930901820222
        "+1 800 FLOWERS",
        "030 901820 ext. 12",  # E.164 drops the extension
        "+49 30 901820;ext=5",
        "tel:+49-30-901820",
        "+49 30 901820\x00",
        "+49 30 9018\uff120",  # fullwidth digit
    ],
)
def test_phones_whose_meaning_e164_would_lose_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        v.normalise_phone(raw, "DE")
    assert caught.value.field == "phone"


def test_booleans_and_integers_are_not_guessed() -> None:
    for raw in ["yes", "false", 1, 0, None]:
        with pytest.raises(InvalidInput, match="granted"):
            v.check_flag("granted", raw)
    for raw in [True, "7", 7.0]:
        with pytest.raises(InvalidInput, match="nps"):
            v.check_integer("nps", raw)
    with pytest.raises(InvalidInput, match="lifecycle_stage"):
        v.parse_enum(v.LifecycleStage, "lifecycle_stage", 1)


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | ANY_TEXT
)


@given(st.dictionaries(st.sampled_from(["city", "plan", "Bad-Key", "x" * 65]), JSON_SCALARS))
def test_attributes_are_refused_or_round_trip_exactly_through_json(raw: dict[str, Any]) -> None:
    try:
        cleaned = normalise_attributes(raw)
    except InvalidInput as error:
        assert error.field.startswith("attributes")
        return
    assert orjson.loads(orjson.dumps(cleaned)) == cleaned
    for value in cleaned.values():
        if isinstance(value, int) and not isinstance(value, bool):
            assert abs(value) <= v.MAX_SAFE_INTEGER
    assert normalise_attributes(cleaned) == cleaned


JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "sku", "quantity", "bad key"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.lists(JSON_VALUES, max_size=3))
def test_items_are_bounded_and_refused_or_canonical(raw: list[Any]) -> None:
    try:
        items = normalise_items(raw)
    except InvalidInput as error:
        assert error.field.startswith("items")
        orjson.dumps(error.to_dict())
        return
    assert orjson.loads(orjson.dumps(items)) == items and normalise_items(items) == items


@given(st.lists(JSON_VALUES, max_size=3))
def test_items_and_attributes_are_stored_in_one_key_order(raw: list[Any]) -> None:
    """Found merging issue 13's branches: an item sent as ``{"quantity": 0, "sku": "0"}``
    was stored with its keys in the order each surface happened to keep them."""

    def reversed_keys(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: reversed_keys(value[k]) for k in reversed(list(value))}
        if isinstance(value, list):
            return [reversed_keys(v) for v in value]
        return value

    try:
        items = normalise_items(raw)
    except InvalidInput:
        return
    assert orjson.dumps(normalise_items(reversed_keys(raw))) == orjson.dumps(items)
    attributes = {"plan": "gold", "city": "Oslo", "age": 3}
    assert orjson.dumps(normalise_attributes(attributes)) == orjson.dumps(
        normalise_attributes(reversed_keys(attributes))
    )


def test_items_limits() -> None:
    ok = normalise_items([{"sku": "tea", "quantity": 2, "options": {"size": ["M", "L"]}}])
    assert ok == [{"sku": "tea", "quantity": 2, "options": {"size": ["M", "L"]}}]
    for bad, field in [
        ({"a": {"b": {"c": {"d": 1}}}}, "items[0].a.b.c"),  # 4 levels: too deep
        ({"sku": 5}, "items[0].sku"),
        ({"quantity": "2"}, "items[0].quantity"),
        ({"n": 2**60}, "items[0].n"),
        ({"t": "x\x00"}, "items[0].t"),
        ({"bad key": 1}, "items[0]"),
        ("sku", "items[0]"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            normalise_items([bad])
        assert caught.value.field == field
    with pytest.raises(InvalidInput, match="100000 characters"):
        normalise_items([{"t": "x" * 1000}] * 101)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"type": "tag", "tag": "x", "expected_version": "3"}, "expected_version"),
        ({"type": "tag", "tag": "x", "expected_version": True}, "expected_version"),
        ({"type": "tag", "tag": "x", "expected_version": 3.0}, "expected_version"),
        ({"type": "tag", "tag": "x", "expected_version": -1}, "expected_version"),
        ({"type": "tag", "tag": "x", "idempotency_key": ""}, "idempotency_key"),
        ({"type": "tag", "tag": "x", "idempotency_key": " k"}, "idempotency_key"),
        ({"type": "tag", "tag": "x", "idempotency_key": 7}, "idempotency_key"),
        ({"type": "tag", "tag": "x", "idempotency_key": "k\u200b"}, "idempotency_key"),
        ({"type": "earn_points", "points": "5"}, "points"),
        ({"type": "earn_points", "points": 5.0}, "points"),
        ({"type": "tier", "tier": "gold!"}, "tier"),
        ({"type": "tag", "tag": "x", "customer_id": 5}, "customer_id"),
    ],
)
def test_parse_command_takes_json_types_strictly(doc: dict[str, Any], field: str) -> None:
    from commands.messages import parse_command  # noqa: PLC0415

    doc = {"customer_id": "3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e", **doc}
    try:
        command = parse_command(doc)
    except InvalidInput as error:
        assert error.field == field
        return
    handlers_only = {"points", "tier"}  # values checked when the handler normalises them
    assert field in handlers_only, command
