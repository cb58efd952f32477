"""Segment rules: a small JSON language over the profile state (pure: no I/O, no clock).

A rule is ``{"all": [rule, …]}``, ``{"any": [rule, …]}``, ``{"not": rule}`` or a condition
``{"field", "op", "value", "within"?}``. :func:`parse` validates a rule once (errors name the
exact path, e.g. ``rule.all[2].op``) and returns its normal form;
:func:`domain.segment_evaluation.evaluate` decides a parsed rule for one profile state at a
given ``now``.

Missing values: a condition on a missing value is false for every op except ``exists`` (so
``ne`` needs a value too); ``not`` is plain negation. Counts and totals are never missing (0),
and a consent never given counts as ``false``. README ("Segment rules") documents the language.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.care import REASONS
from domain.errors import InvalidInput
from domain.payloads import MAX_ITEM_LABEL
from domain.text_policy import Text, check_text, normalise_identifier
from domain.values import (
    ATTRIBUTE_KEY,
    ConsentPurpose,
    LifecycleStage,
    Status,
    check_number,
    normalise_currency,
    normalise_tag,
    parse_enum,
)

Rule = dict[str, Any]

MAX_DEPTH = 8
MAX_CONDITIONS = 100
MAX_VALUES = 100
MAX_TEXT = 1000
MAX_SPAN = timedelta(days=36_525)
MEMBER_STATUSES = frozenset({Status.ACTIVE.value, Status.CHURNED.value})

_EQUALITY = frozenset({"eq", "ne", "in", "exists"})
ORDERS: dict[str, Callable[[int, int], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_OPS: dict[str, frozenset[str]] = {
    "tags": frozenset({"contains", "in"}),
    "text": _EQUALITY,
    "enum": _EQUALITY,
    "consent": frozenset({"eq", "ne"}),
    "flag": frozenset({"eq", "ne"}),
    "number": _EQUALITY | ORDERS.keys(),
    "attribute": _EQUALITY | ORDERS.keys(),
    "time": frozenset({"before", "after", "exists"}),
    "reasons": frozenset({"contains", "in"}),
    "items": frozenset({"contains", "in"}),
}
_FIELDS = {
    "tags": "tags",
    **dict.fromkeys(("lifecycle_stage", "status"), "enum"),
    **dict.fromkeys(("name", "email", "phone", "tier", "rfm.group"), "text"),
    **dict.fromkeys(("purchases.count", "contacts.count", "points"), "number"),
    **dict.fromkeys(("feedback.nps", "feedback.csat", "rfm.r", "rfm.f", "rfm.m"), "number"),
    **dict.fromkeys(("created_at", "purchases.first_at", "purchases.last_at"), "time"),
    "contacts.last_at": "time",
    **dict.fromkeys(("churn_risk.p_alive", "churn_risk.expected_purchases"), "number"),
    "care.reasons": "reasons",
    "value.high_value": "flag",
    "recommendations.top3": "items",
}
_ENUMS = {"lifecycle_stage": LifecycleStage, "status": Status}
RELATIVE = re.compile(r"^(?P<sign>[+-])(?P<n>\d{1,6})(?P<unit>[hdw])$")
WINDOW = re.compile(r"^(?P<n>\d{1,6})(?P<unit>[hdw])$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
TOTAL = "purchases.total."


# --------------------------------------------------------------------------- validation


def parse(rule: object, path: str = "rule") -> Rule:
    """Validate ``rule`` and return its normal form, or raise :class:`InvalidInput`."""
    return _parse(rule, path, 1, [0])


def parse_purpose(value: object, path: str = "purpose") -> str | None:
    """A segment's consent purpose: ``None`` or a :class:`ConsentPurpose` value."""
    return None if value is None else parse_enum(ConsentPurpose, path, value).value


def _parse(node: object, path: str, depth: int, count: list[int]) -> Rule:
    if not isinstance(node, dict):
        raise InvalidInput(path, "must be an object")
    if depth > MAX_DEPTH:
        raise InvalidInput(path, f"rules nest at most {MAX_DEPTH} levels deep")
    combinators = [key for key in ("all", "any", "not") if key in node]
    if not combinators:
        return _condition(node, path, count)
    key = combinators[0]
    if len(node) != 1:
        raise InvalidInput(path, f"{key!r} must be the only key of its object")
    if key == "not":
        return {"not": _parse(node["not"], f"{path}.not", depth + 1, count)}
    items = node[key]
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"{path}.{key}", "must be a non-empty list of rules")
    return {key: [_parse(r, f"{path}.{key}[{i}]", depth + 1, count) for i, r in enumerate(items)]}


def _condition(node: dict[str, Any], path: str, count: list[int]) -> Rule:
    unknown = sorted(set(node) - {"field", "op", "value", "within"})
    if unknown:
        raise InvalidInput(f"{path}.{unknown[0]}", "unknown key (a rule is all, any, not or field)")
    count[0] += 1
    if count[0] > MAX_CONDITIONS:
        raise InvalidInput(path, f"a rule has at most {MAX_CONDITIONS} conditions")
    field, kind = _field(node.get("field"), f"{path}.field")
    op = node.get("op")
    if op not in _OPS[kind]:
        allowed = ", ".join(sorted(_OPS[kind]))
        raise InvalidInput(f"{path}.op", f"{op!r} is not an op of {field}; use one of {allowed}")
    if "value" not in node:
        raise InvalidInput(f"{path}.value", "is required")
    value = _value(kind, field, op, node["value"], f"{path}.value")
    checked: Rule = {"field": field, "op": op, "value": value}
    if "within" in node:
        if field != "purchases.count" and not field.startswith(TOTAL):
            raise InvalidInput(
                f"{path}.within", "only purchases.count and purchases.total.<CUR> take a window"
            )
        span(WINDOW, node["within"], f"{path}.within", 'a duration such as "90d", "12h", "2w"')
        checked["within"] = node["within"]
    return checked


def _field(field: object, path: str) -> tuple[str, str]:
    if not isinstance(field, str):
        raise InvalidInput(path, "is required and must be a string")
    if field in _FIELDS:
        return field, _FIELDS[field]
    head, _, tail = field.partition(".")
    if head == "consents":
        return f"consents.{parse_enum(ConsentPurpose, path, tail).value}", "consent"
    if head == "attributes" and ATTRIBUTE_KEY.match(tail):
        return field, "attribute"
    if field.startswith(TOTAL):
        try:
            return TOTAL + normalise_currency(field.removeprefix(TOTAL)), "number"
        except InvalidInput as error:
            raise InvalidInput(path, error.reason) from None
    raise InvalidInput(path, f"unknown field {field!r}")


def _value(kind: str, field: str, op: str, value: object, path: str) -> Any:
    if op == "exists":
        if not isinstance(value, bool):
            raise InvalidInput(path, "must be true or false")
        return value
    if op != "in":
        return _scalar(kind, field, op, value, path)
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_VALUES:
        raise InvalidInput(path, f"must be a list of 1 to {MAX_VALUES} values")
    return [_scalar(kind, field, op, item, f"{path}[{i}]") for i, item in enumerate(value)]


def _scalar(kind: str, field: str, op: str, value: object, path: str) -> Any:
    if kind == "tags":
        return normalise_tag(value, path)
    if kind == "enum":
        return parse_enum(_ENUMS[field], path, value).value
    if kind == "items":
        return normalise_identifier(path, value, max_length=MAX_ITEM_LABEL)
    if kind == "reasons":
        if value not in REASONS:
            raise InvalidInput(path, f"must be one of {', '.join(REASONS)}")
        return value
    if kind in ("consent", "flag") or (kind == "attribute" and isinstance(value, bool)):
        if not isinstance(value, bool) or op in ORDERS:
            raise InvalidInput(path, "must be true or false (and only with eq, ne, in)")
        return value
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise InvalidInput(path, f"must be at most {MAX_TEXT} characters")
    if isinstance(value, str):
        check_text(path, value, Text.MULTILINE)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        check_number(path, value)
    if kind == "time":
        if isinstance(value, str) and RELATIVE.match(value):
            span(RELATIVE, value, path, 'relative like "-30d"')
        elif not isinstance(value, str) or _absolute(value) is None:
            raise InvalidInput(path, 'must be an RFC 3339 time with offset, or like "-30d"')
        return value
    if kind == "text" and isinstance(value, str):
        return value
    if kind == "number" and as_number(value) is not None:
        return value
    if kind == "attribute" and (isinstance(value, str) or as_number(value) is not None):
        return value
    expected = {"text": "a string", "number": 'a number or a decimal string like "12.50"'}
    raise InvalidInput(path, f"must be {expected.get(kind, 'a string, number or boolean')}")


def span(pattern: re.Pattern[str], value: object, path: str, expected: str) -> timedelta:
    match = pattern.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidInput(path, f"must be {expected}")
    length = duration(match)
    if not timedelta(0) < length <= MAX_SPAN:
        raise InvalidInput(path, "must be more than zero and at most 100 years")
    return length


def duration(match: re.Match[str]) -> timedelta:
    return int(match["n"]) * _UNITS[match["unit"]]


def _absolute(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


# --------------------------------------------------------------------------- inspection


def conditions(rule: Rule) -> Iterator[Rule]:
    """The conditions (leaves) of a parsed rule, in order."""
    if "field" in rule:
        yield rule
    elif "not" in rule:
        yield from conditions(rule["not"])
    else:
        for child in rule["all"] if "all" in rule else rule["any"]:
            yield from conditions(child)


def is_time_relative(rule: Rule) -> bool:
    """True if time alone can change the rule's outcome (windows, relative times, care
    reasons: a follow-up falls due, a birthday comes near)."""
    return uses_care(rule) or any(
        "within" in c or (c["op"] in ("before", "after") and RELATIVE.match(c["value"]))
        for c in conditions(rule)
    )


def uses_care(rule: Rule) -> bool:
    """True if the rule reads ``care.*`` (the care agenda's reasons, under the care policy)."""
    return any(c["field"].startswith("care.") for c in conditions(rule))


def uses_rfm(rule: Rule) -> bool:
    """True if the rule reads RFM scores (decided at refreshes over all customers, not per event)."""
    return any(c["field"].startswith("rfm.") for c in conditions(rule))


def uses_recommendations(rule: Rule) -> bool:
    """True if the rule reads ``recommendations.*`` (ranked over all customers at refreshes)."""
    return any(c["field"].startswith("recommendations.") for c in conditions(rule))


def uses_churn_risk(rule: Rule) -> bool:
    """True if the rule reads the churn model: ``churn_risk.*`` or ``value.*`` (decided again
    at each fit)."""
    return any(c["field"].startswith(("churn_risk.", "value.")) for c in conditions(rule))


def as_number(value: Any) -> Decimal | None:
    """A finite number given as int, float or decimal string; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None
