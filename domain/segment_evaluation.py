"""Deciding a parsed segment rule (:mod:`domain.segment_rules`) for one profile state at a
given ``now``: the live-and-consented gate, then the conditions (pure: no I/O, no clock)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from domain.segment_rules import (
    MEMBER_STATUSES,
    ORDERS,
    RELATIVE,
    TOTAL,
    WINDOW,
    Rule,
    as_number,
    duration,
    span,
)


def admits(state: Mapping[str, Any], purpose: str | None) -> bool:
    """The gate before any rule: a live customer (active or churned) who consented to ``purpose``."""
    if state.get("status") not in MEMBER_STATUSES:
        return False
    return purpose is None or state.get("consents", {}).get(purpose) is True


def matches(
    rule: Rule,
    purpose: str | None,
    state: Mapping[str, Any],
    now: datetime,
    rfm: Mapping[str, Any] | None = None,
) -> bool:
    """Segment membership: :func:`admits`, then :func:`evaluate`."""
    return admits(state, purpose) and evaluate(rule, state, now, rfm)


def evaluate(
    rule: Rule, state: Mapping[str, Any], now: datetime, rfm: Mapping[str, Any] | None = None
) -> bool:
    """Decide a parsed rule for one profile state; relative times count back from ``now``."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if "all" in rule:
        return all(evaluate(r, state, now, rfm) for r in rule["all"])
    if "any" in rule:
        return any(evaluate(r, state, now, rfm) for r in rule["any"])
    if "not" in rule:
        return not evaluate(rule["not"], state, now, rfm)
    return _test(rule, _lookup(rule, state, now, rfm), now)


def _lookup(
    condition: Rule, state: Mapping[str, Any], now: datetime, rfm: Mapping[str, Any] | None
) -> Any:
    field: str = condition["field"]
    if field.startswith("rfm."):
        score = (rfm or {}).get(field.removeprefix("rfm."))
        return score if field == "rfm.group" else as_number(score)
    if "status" not in state:
        return None  # not registered
    if field.startswith("consents."):
        return state.get("consents", {}).get(field.removeprefix("consents."), False)
    if "within" in condition:
        start = now - span(WINDOW, condition["within"], "within", "a duration")
        return _window(state.get("orders", {}), field, start, now)
    if field.startswith(TOTAL):
        totals = state.get("purchases", {}).get("total", {})
        return as_number(totals.get(field.removeprefix(TOTAL), "0"))
    value: Any = state
    for part in field.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _window(orders: Mapping[str, list[str]], field: str, start: datetime, end: datetime) -> Any:
    """Count or total of the orders that occurred in ``(start, end]``."""
    inside = []
    for currency, amount, occurred_at in orders.values():
        when = _instant(occurred_at)
        if when is not None and start < when <= end:
            inside.append((currency, amount))
    if field == "purchases.count":
        return len(inside)
    wanted = field.removeprefix(TOTAL)
    return sum((as_number(a) or Decimal(0) for c, a in inside if c == wanted), Decimal(0))


def _test(condition: Rule, actual: Any, now: datetime) -> bool:
    op, value = condition["op"], condition["value"]
    if op == "exists":
        return (actual is not None) is value
    if actual is None:
        return False
    if op == "contains":
        return value in actual
    if op == "in":
        if isinstance(actual, list):
            return any(v in actual for v in value)
        return any(_equal(actual, v) for v in value)
    if op in ("eq", "ne"):
        return _equal(actual, value) is (op == "eq")
    if op in ("before", "after"):
        when, limit = _instant(actual), _moment(value, now)
        if when is None:
            return False
        return when < limit if op == "before" else when > limit
    order = _compare(actual, value)
    return order is not None and ORDERS[op](order, 0)


def _equal(actual: Any, value: Any) -> bool:
    """Booleans equal only booleans; numbers by value (unless both are strings); else ==."""
    if isinstance(actual, bool) or isinstance(value, bool):
        return actual is value
    if not (isinstance(actual, str) and isinstance(value, str)):
        left, right = as_number(actual), as_number(value)
        if left is not None and right is not None:
            return left == right
    return bool(actual == value)


def _compare(actual: Any, value: Any) -> int | None:
    """-1, 0 or 1 for two numbers (decimal strings included) or two strings; else None."""
    left, right = as_number(actual), as_number(value)
    if left is not None and right is not None:
        return (left > right) - (left < right)
    if isinstance(actual, str) and isinstance(value, str):
        return (actual > value) - (actual < value)
    return None


def _instant(value: Any) -> datetime | None:
    """A stored timestamp as an aware datetime (naive ones are UTC); junk is None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _moment(value: str, now: datetime) -> datetime:
    """A parsed rule's time: relative to ``now`` ("-30d") or absolute."""
    relative = RELATIVE.match(value)
    if relative is None:
        return datetime.fromisoformat(value)
    return now + duration(relative) * (1 if relative["sign"] == "+" else -1)
