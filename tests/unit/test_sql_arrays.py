"""Rows for the read store's set-based statements: one per key as if written in order, and
PostgreSQL arrays typed by their values, or left to the statement when all None."""

from __future__ import annotations

import pytest

from infra.sql_arrays import (
    UndeclaredFractions,
    one_per_key,
    refuse_undeclared_fractions,
    typed,
    unnest_rows,
)

COLUMNS = ("k", "n", "body")
ROWS = [("a", 1, "first"), ("b", 1, "other"), ("a", 1, "last"), ("a", 2, "kept")]


def test_one_row_per_key_the_last_when_replacing_the_first_when_not() -> None:
    assert one_per_key(COLUMNS, ("k", "n"), ROWS, last=True) == [
        ("a", 1, "last"),
        ("b", 1, "other"),
        ("a", 2, "kept"),
    ]
    assert one_per_key(COLUMNS, ("k", "n"), ROWS, last=False) == [
        ("a", 1, "first"),
        ("b", 1, "other"),
        ("a", 2, "kept"),
    ]
    distinct = ROWS[:2]
    assert one_per_key(COLUMNS, ("k", "n"), distinct, last=True) is distinct


def test_columns_are_typed_by_their_values_and_nulls_by_the_statement() -> None:
    columns = ("k", "n", "ratio", "flag", "when")
    rows = [("a", 1, 1, True, None), ("b", None, 2.5, None, None)]
    select, source, params = unnest_rows(columns, rows, fractional={"ratio"})
    assert select == "d.k, d.n, d.ratio, d.flag, NULL"
    assert source == (
        "unnest(%b::text[], %b::bigint[], %b::double precision[], %b::boolean[]) "
        "AS d (k, n, ratio, flag)"
    )
    assert params == [["a", "b"], [1, None], [1.0, 2.5], [True, None]]
    assert [type(v) for v in params[2]] == [float, float]  # psycopg refuses mixed lists


def test_a_set_with_no_value_at_all_is_refused() -> None:
    with pytest.raises(ValueError, match="no column holds a value"):
        unnest_rows(("k",), [(None,)])


@pytest.mark.parametrize(
    "column",
    [[1, 2.5], [2.5, 1], [None, 3, 0.5], [1.0, 2], [0.5, None, 2.0], [2.5]],
    ids=["int-first", "float-first", "none", "whole-float", "floats-only", "one-float"],
)
def test_fractions_are_refused_unless_the_column_is_fractional(column: list[object]) -> None:
    """Sent as double precision[], a BIGINT target would round 2.5 silently, whether or not
    the column also holds whole numbers."""
    with pytest.raises(UndeclaredFractions, match="not declared fractional"):
        typed(column)
    with pytest.raises(UndeclaredFractions):
        unnest_rows(("n",), [(v,) for v in column])
    with pytest.raises(UndeclaredFractions):
        refuse_undeclared_fractions(("k", "n"), [("a", v) for v in column], ())
    kind, values = typed(column, fractional=True)
    assert kind == "double precision[]" and all(type(v) is float for v in values if v is not None)
    refuse_undeclared_fractions(("k", "n"), [("a", v) for v in column], ("n",))
    assert typed([0.5, None, 2.0], fractional=True) == ("double precision[]", [0.5, None, 2.0])
    assert typed([1, None, 2]) == ("bigint[]", [1, None, 2])
    refuse_undeclared_fractions(("k", "n"), [("a", 1), ("b", None), ("c", True)], ())


class _Float64(float):
    """A float subclass, as numpy's float64 is."""


@pytest.mark.parametrize(
    "column", [[True, 0.5], ["x", 0.5], [_Float64(0.5)]], ids=["bool-first", "text-first", "sub"]
)
def test_a_float_anywhere_in_an_undeclared_column_is_refused(column: list[object]) -> None:
    """Whatever the column's first value, and a float subclass too (typed() types a column by
    its first value: the check for a backend that takes rows as they are must not)."""
    rows = [("a", value) for value in column]
    with pytest.raises(UndeclaredFractions, match="column n holds fractional numbers"):
        refuse_undeclared_fractions(("k", "n"), rows, ())
    refuse_undeclared_fractions(("k", "n"), rows, ("n",))
