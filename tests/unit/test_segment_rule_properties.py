"""Segment rule language, properties over generated rules and profiles: every valid rule parses
to a fixed point and evaluates to a boolean (its negation to the other one) on any state, time and
RFM scores; any other JSON is refused only with ``InvalidInput`` naming a ``rule`` path."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from hypothesis import assume, given
from hypothesis import strategies as st

from domain.errors import InvalidInput
from domain.segment_evaluation import evaluate
from domain.segment_rules import MAX_DEPTH, Rule, parse
from domain.text_policy import Text, text_problem
from domain.values import ConsentPurpose, LifecycleStage, Status
from projections import profile_fold
from tests.unit.segment_rules_support import cond

TIMES = st.one_of(
    st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ).map(datetime.isoformat),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)).map(
        datetime.isoformat
    ),
    st.just("not a time"),
)
OPTIONAL_TIMES = st.none() | TIMES
TEXT = st.text(max_size=6)
RULE_TEXT = TEXT.filter(lambda text: text_problem(text, Text.MULTILINE) is None)  # storable
NUMBERS = st.integers(-5, 10**6) | st.decimals(0, 10**6, places=2).map(str) | st.floats(-1e6, 1e6)
SCALARS = RULE_TEXT | NUMBERS | st.booleans()
CURRENCIES = st.sampled_from(["EUR", "USD", "GBP"])
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "tags": st.sampled_from(["vip", "Gold", "new-1"]),
    "text": RULE_TEXT,
    "lifecycle_stage": st.sampled_from([s.value for s in LifecycleStage]),
    "status": st.sampled_from([s.value for s in Status]),
    "consent": st.booleans(),
    "number": NUMBERS,
    "attribute": SCALARS,
    "time": st.sampled_from(["-30d", "+2w", "-12h", "-5214w", "2024-01-01T00:00:00+00:00"]),
}
ORDERED = ["eq", "ne", "in", "exists", "gt", "gte", "lt", "lte"]
KINDS: dict[str, tuple[str, list[str]]] = {
    "tags": ("tags", ["contains", "in"]),
    "name": ("text", ["eq", "ne", "in", "exists"]),
    "tier": ("text", ["eq", "ne", "in", "exists"]),
    "rfm.group": ("text", ["eq", "in", "exists"]),
    "lifecycle_stage": ("lifecycle_stage", ["eq", "ne", "in", "exists"]),
    "status": ("status", ["eq", "ne", "in", "exists"]),
    "consents.email_marketing": ("consent", ["eq", "ne"]),
    "attributes.plan": ("attribute", ORDERED),
    "purchases.count": ("number", ORDERED),
    "purchases.total.EUR": ("number", ORDERED),
    "feedback.nps": ("number", ORDERED),
    "points": ("number", ORDERED),
    "rfm.r": ("number", ORDERED),
    "contacts.last_at": ("time", ["before", "after", "exists"]),
    "purchases.first_at": ("time", ["before", "after", "exists"]),
}


@st.composite
def conditions(draw: st.DrawFn) -> Rule:
    field = draw(st.sampled_from(sorted(KINDS)))
    kind, ops = KINDS[field]
    op = draw(st.sampled_from(ops))
    ordered = kind == "attribute" and op in ("gt", "gte", "lt", "lte")
    values = RULE_TEXT | NUMBERS if ordered else VALUES[kind]
    value: Any
    if op == "exists":
        value = draw(st.booleans())
    elif op == "in":
        value = draw(st.lists(values, min_size=1, max_size=3))
    else:
        value = draw(values)
    rule = cond(field, op, value)
    if field in ("purchases.count", "purchases.total.EUR") and draw(st.booleans()):
        rule["within"] = draw(st.sampled_from(["1h", "30d", "2w", "5214w"]))
    return rule


RULES = st.recursive(
    conditions(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda rules: {"all": rules}),
        st.lists(children, min_size=1, max_size=3).map(lambda rules: {"any": rules}),
        children.map(lambda rule: {"not": rule}),
    ),
    max_leaves=12,
)
PROFILES: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "status": st.sampled_from([s.value for s in Status]),
        "tags": st.lists(st.sampled_from(["vip", "gold", "new-1"]), max_size=3),
        "lifecycle_stage": st.sampled_from([s.value for s in LifecycleStage]),
        "consents": st.dictionaries(st.sampled_from(list(ConsentPurpose)), st.booleans()),
        "attributes": st.dictionaries(st.sampled_from(["plan", "seats"]), SCALARS),
        "name": st.none() | TEXT,
        "tier": st.none() | TEXT,
        "points": st.integers(0, 1000),
        "orders": st.dictionaries(
            TEXT,
            st.tuples(CURRENCIES, st.decimals(0, 10**6, places=2).map(str), TIMES).map(list),
        ),
        "purchases": st.fixed_dictionaries(
            {
                "count": st.integers(0, 5),
                "total": st.dictionaries(CURRENCIES, st.decimals(0, 10**6, places=2).map(str)),
                "first_at": OPTIONAL_TIMES,
                "last_at": OPTIONAL_TIMES,
            }
        ),
        "contacts": st.fixed_dictionaries({"count": st.integers(0, 5), "last_at": OPTIONAL_TIMES}),
        "feedback": st.fixed_dictionaries(
            {"nps": st.none() | st.integers(0, 10), "csat": st.none() | st.integers(1, 5)}
        ),
    }
)
STATES: st.SearchStrategy[dict[str, Any]] = (
    PROFILES | st.just({}) | st.builds(lambda: profile_fold.empty(uuid4()))
)
SCORES = st.none() | st.dictionaries(
    st.sampled_from(["r", "f", "m", "group"]), st.none() | st.integers(1, 5) | TEXT
)
NOWS = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def depth(rule: Rule) -> int:
    if "not" in rule:
        return 1 + depth(rule["not"])
    children = rule.get("all") or rule.get("any")
    return 1 + max(map(depth, children)) if children else 1


@given(RULES, STATES, NOWS, SCORES)
def test_evaluate_never_crashes_on_valid_rules(
    rule: Rule, state: dict[str, Any], now: datetime, scores: dict[str, Any] | None
) -> None:
    assume(depth(rule) <= MAX_DEPTH)
    parsed = parse(rule)
    assert parse(parsed) == parsed
    outcome = evaluate(parsed, state, now, scores)
    assert isinstance(outcome, bool)
    assert evaluate({"not": parsed}, state, now, scores) is not outcome


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["all", "any", "not", "field", "op", "value", "within"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=10,
)


@given(JSON)
def test_parse_refuses_junk_only_with_invalid_input(junk: Any) -> None:
    try:
        parse(junk)
    except InvalidInput as error:
        assert error.field.startswith("rule")
