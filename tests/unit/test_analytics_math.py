"""The pure analytics computations (RFM, churn, NPS/CSAT) against small hand-computed cases."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from projections import rfm
from projections.analytics import churn_periods, period_bounds, satisfaction_summary


def d(text: str) -> date:
    return date.fromisoformat(text)


def test_rfm_summary_follows_the_transaction_summary_definitions() -> None:
    purchases = [
        ("a", d("2024-01-01"), Decimal("10.00")),
        ("a", d("2024-01-01"), Decimal("5.00")),  # same day: one purchase day of 15.00
        ("a", d("2024-01-05"), Decimal("20.00")),
        ("a", d("2024-01-10"), Decimal("7.50")),
        ("a", d("2024-01-10"), Decimal("2.50")),
        ("a", d("2024-02-01"), Decimal("99.00")),  # after the observation end: ignored
        ("b", d("2024-01-20"), Decimal("99.99")),
        ("c", d("2024-01-02"), Decimal("1.00")),
        ("c", d("2024-01-03"), Decimal("1.00")),
        ("c", d("2024-01-04"), Decimal("1.01")),
    ]
    assert rfm.summarise(purchases, d("2024-01-31")) == {
        # days 01-01 (15), 01-05 (20), 01-10 (10): two repeat days, mean (20 + 10) / 2
        "a": {"frequency": 2, "recency": 9, "T": 30, "monetary": "15.00"},
        "b": {"frequency": 0, "recency": 0, "T": 11, "monetary": "0.00"},
        # (1.00 + 1.01) / 2 = 1.005, rounded half-even
        "c": {"frequency": 2, "recency": 2, "T": 29, "monetary": "1.00"},
    }


def test_quintiles_are_rank_based_and_ties_share_the_lowest_rank() -> None:
    assert rfm.quintiles({f"c{i}": i for i in range(10)}) == {
        f"c{i}": score for i, score in enumerate([1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    }
    assert rfm.quintiles(dict.fromkeys("gfedcba", 0)) == dict.fromkeys("abcdefg", 1)
    # 0 x4, 1 x3, 2 x2, 3 x1 of 10: strictly below 1: 4 -> 1 + 20 // 10 = 3; below 2: 7 -> 4;
    # below 3: 9 -> 5
    values = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3]
    assert rfm.quintiles({f"c{i}": v for i, v in enumerate(values)}) == {
        f"c{i}": {0: 1, 1: 3, 2: 4, 3: 5}[v] for i, v in enumerate(values)
    }
    assert rfm.cuts(values) == (0, 0, 1, 2)  # the values at positions 2, 4, 6, 8
    assert rfm.quintiles({"a": 7, "b": 7, "c": 9}) == {"a": 1, "b": 1, "c": 4}
    assert rfm.quintiles({}) == {} and rfm.cuts([]) == ()


def test_groups_cover_every_score_pair() -> None:
    names = {rfm.group(r, f) for r in range(1, 6) for f in range(1, 6)}
    assert names == {
        "champions",
        "loyal",
        "potential_loyalist",
        "new",
        "needs_attention",
        "at_risk",
        "hibernating",
        "lost",
    }
    assert [rfm.group(*rf) for rf in ((5, 5), (4, 4), (3, 5), (5, 1), (4, 3))] == [
        "champions",
        "champions",
        "loyal",
        "new",
        "potential_loyalist",
    ]
    assert [rfm.group(*rf) for rf in ((3, 2), (2, 5), (2, 2), (1, 2), (1, 1))] == [
        "needs_attention",
        "at_risk",
        "hibernating",
        "hibernating",
        "lost",
    ]


def test_scores_favour_recent_frequent_and_big_spenders() -> None:
    summary = {
        "old": {"frequency": 0, "recency": 0, "T": 300, "monetary": "0.00"},
        "recent": {"frequency": 3, "recency": 100, "T": 101, "monetary": "50.00"},
    }
    scored = rfm.score(summary)
    assert (scored["recent"]["r"], scored["recent"]["f"], scored["recent"]["m"]) == (3, 3, 3)
    assert (scored["old"]["r"], scored["old"]["f"], scored["old"]["m"]) == (1, 1, 1)
    assert scored["old"]["group"] == "lost" and scored["recent"]["group"] == "needs_attention"
    assert scored["old"]["T"] == 300  # the summary is kept


def test_period_bounds_are_whole_calendar_periods() -> None:
    assert period_bounds("month", d("2024-01-15"), d("2024-03-10")) == [
        (d("2024-01-01"), d("2024-02-01")),
        (d("2024-02-01"), d("2024-03-01")),
        (d("2024-03-01"), d("2024-04-01")),
    ]
    assert period_bounds("month", d("2024-01-01"), d("2024-02-01")) == [
        (d("2024-01-01"), d("2024-02-01"))
    ]
    assert period_bounds("quarter", d("2024-11-10"), d("2025-01-02")) == [
        (d("2024-10-01"), d("2025-01-01")),
        (d("2025-01-01"), d("2025-04-01")),
    ]
    assert period_bounds("year", d("2023-06-01"), d("2024-06-01")) == [
        (d("2023-01-01"), d("2024-01-01")),
        (d("2024-01-01"), d("2025-01-01")),
    ]


def at(text: str) -> str:
    return f"{text}.000000+00:00"


HISTORIES = {
    # active at the January start, churns in January
    "a": [
        ("registered", at("2023-12-05T10:00:00"), "active"),
        ("churned", at("2024-01-10T10:00:00"), "churned"),
    ],
    # registered during January: not in January's denominator, its churn does not count
    "b": [
        ("registered", at("2024-01-03T10:00:00"), "active"),
        ("churned", at("2024-01-20T10:00:00"), "churned"),
    ],
    # merged at the January start, unmerged in January, churns in February
    "c": [
        ("registered", at("2023-11-01T10:00:00"), "active"),
        ("merged", at("2023-12-20T10:00:00"), "merged"),
        ("unmerged", at("2024-01-15T10:00:00"), "active"),
        ("churned", at("2024-02-02T10:00:00"), "churned"),
    ],
    # churned at the January start: its reactivation and second churn in January do not count
    "d": [
        ("registered", at("2023-10-01T10:00:00"), "active"),
        ("churned", at("2023-12-01T10:00:00"), "churned"),
        ("reactivated", at("2024-01-05T10:00:00"), "active"),
        ("churned", at("2024-01-25T10:00:00"), "churned"),
    ],
    # active at the January start, erased in January: not a churn
    "e": [
        ("registered", at("2023-10-01T10:00:00"), "active"),
        ("erased", at("2024-01-20T10:00:00"), "erased"),
    ],
    # churns twice in January: counted once
    "f": [
        ("registered", at("2023-12-31T23:59:59"), "active"),
        ("churned", at("2024-01-02T10:00:00"), "churned"),
        ("reactivated", at("2024-01-03T10:00:00"), "active"),
        ("churned", at("2024-01-04T10:00:00"), "churned"),
    ],
    # a back-dated first purchase moved its stage before it registered (January 10)
    "g": [
        ("registered", at("2024-01-10T10:00:00"), "active"),
        ("stage_changed", at("2023-12-20T10:00:00"), "active"),
    ],
}


def test_churn_counts_the_cohort_active_at_each_period_start() -> None:
    months = churn_periods(HISTORIES, "month", d("2023-12-01"), d("2024-03-15"))
    assert [(p["period"], p["active_at_start"], p["churned"], p["rate"]) for p in months] == [
        ("2023-12-01", 3, 1, 0.333333),  # c, d, e active; d churns (c merges: not a churn)
        ("2024-01-01", 3, 2, 0.666667),  # a, e, f; a and f churn
        ("2024-02-01", 2, 1, 0.5),  # c (unmerged) and g; c churns
        ("2024-03-01", 1, 0, 0.0),  # g
    ]
    assert months[0]["end"] == "2024-01-01"
    (quarter,) = churn_periods(HISTORIES, "quarter", d("2024-01-01"), d("2024-03-31"))
    assert (quarter["active_at_start"], quarter["churned"]) == (3, 2)
    (empty,) = churn_periods(HISTORIES, "year", d("2020-01-01"), d("2020-02-01"))
    assert (empty["active_at_start"], empty["rate"]) == (0, None)


def test_satisfaction_uses_each_customers_latest_answer() -> None:
    answers = [
        ("a", 10, 5),
        ("a", 3, None),  # a's NPS is now 3; its CSAT stays 5
        ("b", None, 2),
        ("c", 9, None),
        ("d", 7, 4),
    ]
    assert satisfaction_summary(answers) == {
        "nps": {"score": 0.0, "responses": 3},  # (1 promoter - 1 detractor) / 3
        "csat": {"score": 66.6667, "responses": 3},  # a 5, d 4 of a, b, d
        "counts": {
            "nps": {"promoters": 1, "passives": 1, "detractors": 1},
            "csat": {"satisfied": 2, "unsatisfied": 1},
        },
    }
    none = satisfaction_summary([])
    assert none["nps"] == {"score": None, "responses": 0} and none["csat"]["score"] is None
