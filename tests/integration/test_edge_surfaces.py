"""Every field of every command, through three surfaces at once: an HTTP route, ``POST
/v1/commands:batch`` and ``parse_command`` (what the Kafka command topic and CSV import use).

Each surface runs against its own store, fed the same sequence of inputs, so the stores stay in
step. For any generated value (valid, ambiguous, lossy, or text no backend can store), the
surfaces must decide alike; a refusal names the field; an acceptance stores the same canonical
event on every surface, the envelope validates against the published schema, and sending the
stored value again stores it unchanged (re-normalisation is idempotent).

The surfaces and how their decisions are compared are in ``surfaces_support``; this module holds
the generated values, field by field, and which of them must be refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.text_policy import Text, text_problem
from tests.integration.surfaces_support import (
    Surface,
    check_stable,
    decide_everywhere,
    three_surfaces,
)

TEXT = st.text(st.characters(exclude_categories=()), max_size=10) | st.sampled_from(
    [
        "Nul\u0000Byte",
        "Zoe\u0308 \t Miller",
        " padded ",
        "a\r\nb",
        "\u202egnirts",
        "a\u200bb",
        "👩\u200d💻",
        "x" * 1001,
        "",
    ]
)
INTEGERS = st.integers(-3, 12) | st.sampled_from([True, False, "7", 7.0, 2**60, None])
AMBIGUOUS_TIMES = [
    "2024-01-01",
    "2024-01-01T12:00:00",
    "2024-01-01T12:00:00-00:00",
    "2024-01-01T12:00:00.1234567Z",
    "1899-12-31T23:59:59Z",
    "2999-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",  # before CLIENTELE_BUSINESS_TIME_FLOOR
    1_700_000_000,
    1_700_000_000_000,
]
TIMES = st.sampled_from(
    [
        "2024-01-01T12:00:00Z",
        "2024-01-01T14:00:00+02:00",
        "2024-01-01t12:00:00.5z",
        None,
        *AMBIGUOUS_TIMES,
    ]
)
AMBIGUOUS_AMOUNTS = ["1E+2", "-0", ".5", "12.", "1,000", "0.00001", "1e12", 12, 12.5, True]


def unstorable(value: object) -> bool:
    """Text that no field may hold, whatever its kind."""
    return isinstance(value, str) and text_problem(value, Text.MULTILINE) is not None


def not_an_integer(value: object) -> bool:
    return isinstance(value, bool | str | float) or (isinstance(value, int) and value > 2**53)


def not_a_quantity(value: object) -> bool:
    """A line item's quantity: a JSON number > 0 and at most 1,000,000 (or absent)."""
    if value is None:
        return False
    return isinstance(value, bool | str) or not 0 < value <= 1_000_000  # type: ignore[operator]


def one_of(values: list[Any]) -> Any:
    return lambda value: any(value == v and type(value) is type(v) for v in values)


def never(_: object) -> bool:
    return False


# (command, field, values, which values must be refused as ambiguous, lossy or unstorable)
CASES: list[tuple[str, str, st.SearchStrategy[Any], Any]] = [
    ("register", "name", TEXT, unstorable),
    (
        "register",
        "email",
        TEXT | st.sampled_from(["ADA@Example.com", "a@b", "x\u0000@y.de"]),
        unstorable,
    ),
    (
        "register",
        "phone",
        st.sampled_from(["030 901820", "+1 (650) 253-0000", "+49 30 901820 abc", "1-800-FLOWERS"])
        | st.sampled_from(["030 901820 ext. 12", "+49 30 9018\uff120", "", None, 4930901820]),
        one_of(["+49 30 901820 abc", "1-800-FLOWERS", "030 901820 ext. 12", 4930901820]),
    ),
    ("register", "source", TEXT, unstorable),
    ("register", "lifecycle_stage", st.sampled_from(["NEW", " loyal ", "vip", 1, None]), never),
    ("register", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    (
        "register",
        "external_ids",
        st.dictionaries(
            st.sampled_from(["shop", "Legacy_CRM", "1bad", "x\u0000"]),
            TEXT | INTEGERS | st.sampled_from(["00042", " C-17 "]),
            max_size=2,
        )
        | st.sampled_from([None, [], "shop"]),
        lambda v: (
            not isinstance(v, dict)
            or any(not isinstance(k, str) or not k[:1].isalpha() for k in v)
            or any(unstorable(x) or isinstance(x, int) for x in v.values())
        ),
    ),
    (
        "register",
        "attributes",
        st.dictionaries(
            st.sampled_from(["city", "Bad", "x\u0000"]),
            TEXT | INTEGERS | st.floats() | st.lists(st.integers(), max_size=1),
            max_size=2,
        )
        | st.sampled_from([None, [], "city"]),
        lambda v: (
            not isinstance(v, dict)
            or any(unstorable(x) or (isinstance(x, int) and x > 2**53) for x in v.values())
        ),
    ),
    (
        "update",
        "attributes",
        st.sampled_from([None, [], {}, {"city": None}, {"city": "Rome"}]),
        one_of([None, []]),
    ),
    (
        "update",
        "external_ids",
        st.sampled_from([None, [], {}, {"shop": None}, {"shop": "s-1"}, {"SHOP": 7}]),
        one_of([None, [], {"SHOP": 7}]),
    ),
    ("update", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    ("contact", "subject", TEXT, unstorable),
    ("contact", "summary", TEXT, unstorable),
    ("contact", "channel", st.sampled_from(["EMAIL", "fax", " chat ", 3, None]), never),
    ("contact", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    (
        "tag",
        "tag",
        TEXT.filter(lambda t: "/" not in t and t.strip(".") and t.isprintable()),
        unstorable,
    ),
    (
        "tag",
        "tag",
        st.sampled_from(["C++", "C#", "日本", "VIP Gold!!", "Gold_Member", "!!!"]),
        one_of(["VIP Gold!!", "!!!"]),
    ),
    ("purchase", "order_id", TEXT, unstorable),
    (
        "purchase",
        "amount",
        st.sampled_from(["12.50", " 7 ", "007.50", None, "0" * 41, *AMBIGUOUS_AMOUNTS]),
        one_of(AMBIGUOUS_AMOUNTS),
    ),
    ("purchase", "currency", st.sampled_from(["eur", " USD ", "EURO", "XXY", 978, None]), never),
    ("purchase", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    (
        "purchase",
        "items",
        st.lists(
            st.fixed_dictionaries({}, optional={"sku": TEXT | INTEGERS, "quantity": INTEGERS})
            | st.dictionaries(st.sampled_from(["note", "bad key"]), TEXT | INTEGERS, max_size=2)
            | st.sampled_from(["sku", None, {"a": {"b": {"c": {"d": 1}}}}]),
            max_size=2,
        ),
        lambda items: any(
            isinstance(item, dict) and not_a_quantity(item.get("quantity")) for item in items
        ),
    ),
    ("feedback", "nps", INTEGERS, not_an_integer),
    ("feedback", "comment", TEXT, unstorable),
    ("feedback", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    ("tag", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    (
        "consent",
        "granted",
        st.sampled_from([True, False, "yes", "false", 1, 0, None]),
        lambda v: not isinstance(v, bool),
    ),
    ("consent", "source", TEXT, unstorable),
    ("consent", "purpose", st.sampled_from(["Profiling", "newsletter", " sms_marketing "]), never),
    ("consent", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    ("lifecycle", "stage", st.sampled_from(["LOYAL", "at_risk", "gold", 2, None]), never),
    ("lifecycle", "reason", TEXT, unstorable),
    ("lifecycle", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    ("churn", "reason", TEXT, unstorable),
    ("churn", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    (
        "merge",
        "duplicate_id",
        st.sampled_from(
            [
                "not-a-uuid",
                123,
                None,
                "",
                "3F2B8C9E-1D2A-4B5C-8D9E-0F1A2B3C4D5E",
                "3f2b8c9e1d2a4b5c8d9e0f1a2b3c4d5e",
                "{3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e}",
            ]
        ),
        lambda v: not isinstance(v, str),
    ),
]


@pytest.fixture(scope="module")
def surfaces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Surface]]:
    with three_surfaces(Path(tmp_path_factory.mktemp("surfaces"))) as mine:
        yield mine


@pytest.mark.parametrize(
    ("kind", "field", "values", "refuse"), CASES, ids=[f"{k}.{f}" for k, f, _, _ in CASES]
)
def test_every_surface_decides_every_field_alike(
    surfaces: list[Surface],
    kind: str,
    field: str,
    values: st.SearchStrategy[Any],
    refuse: Callable[[Any], bool],
) -> None:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(values)
    def check(value: Any) -> None:
        decision = decide_everywhere(surfaces, kind, field, value)
        if refuse(value):
            assert not decision.accepted and decision.code == "validation", (value, decision)
        if decision.accepted:
            check_stable(surfaces, kind, field, decision)

    check()
