"""The analytics counts are sums: the order in which customers are applied never shows.

A customer's share of ``analytics_active_months`` holds a -1 (the month after they stopped
being active); another's +1 on the same month brings the row back to zero from below when
applied second, from above when applied first. Both orders must leave the same rows.
"""

from __future__ import annotations

from itertools import permutations
from typing import Any

from infra.readstore import open_read_store
from projections import lifecycle_model
from projections.analytics import AnalyticsProjector
from projections.framework import ensure_schema

Rows = list[tuple[Any, ...]]  # (customer, version, kind, at, from, to, status): analytics_stages
A: Rows = [
    ("a", 1, "registered", "2024-01-15T10:00:00.000000+00:00", None, "new", "active"),
    ("a", 2, "churned", "2024-03-10T10:00:00.000000+00:00", "new", "churned", "churned"),
]
B: Rows = [("b", 1, "registered", "2024-03-20T10:00:00.000000+00:00", None, "new", "active")]
C: Rows = [
    ("c", 1, "registered", "2023-12-01T10:00:00.000000+00:00", None, "active", "active"),
    ("c", 2, "churned", "2024-02-01T00:00:00.000000+00:00", "active", "churned", "churned"),
]


def counts(order: tuple[Rows, ...]) -> dict[str, list[tuple[Any, ...]]]:
    store = open_read_store("memory://")
    ensure_schema(store, [AnalyticsProjector()])
    for rows in order:  # one batch per customer, each in its own transaction
        with store.transaction() as tx:
            after = {rows[0][0]: (rows[-1][5], rows[-1][6])}
            lifecycle_model.update(tx, {}, after, rows)
            tx.insert(
                "analytics_stages",
                ("customer_id", "version", "kind", "at", "from_stage", "to_stage", "status"),
                rows,
            )
    with store.transaction() as tx:
        return {t: sorted(tx.fetchall(f"SELECT * FROM {t}")) for t in lifecycle_model.TABLES}


def test_every_order_of_customers_leaves_the_same_counts() -> None:
    results = [counts(order) for order in permutations([A, B, C])]
    assert all(result == results[0] for result in results)
    assert ("2024-04", 0) not in results[0]["analytics_active_months"]  # -1 +1: no row left
    assert results[0]["analytics_active_months"] == [  # a Feb-Mar, b from Apr, c Jan-Feb
        ("2024-01", 1),
        ("2024-02", 1),
        ("2024-03", -1),
    ]
    assert results[0]["analytics_churned"] == [  # c churns at the very start of February
        ("month", "2024-02", 1),
        ("month", "2024-03", 1),
        ("quarter", "2024-01", 1),
        ("year", "2024-01", 1),
    ]
