"""Shared by the segment rule tests: one condition of the rule language, written briefly."""

from __future__ import annotations

from typing import Any

from domain.segment_rules import Rule


def cond(field: str, op: str, value: Any, **extra: Any) -> Rule:
    return {"field": field, "op": op, "value": value, **extra}
