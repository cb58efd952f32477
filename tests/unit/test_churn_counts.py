"""Churn from the kept counts equals churn read straight from the definition (issue 14, item 5).

The read model keeps per-month counts that each customer's history contributes to
(:mod:`projections.lifecycle_model`); here random histories — back-dated events, events at
exactly a month's start, several events at one instant — are counted both ways.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.analytics import Period, churn_periods, period_bounds

FIRST = datetime(2023, 1, 1, tzinfo=UTC)
KINDS = ["stage_changed", "churned", "reactivated", "merged", "unmerged", "erased"]
STATUSES = ["active", "churned", "merged", "erased"]
History = list[tuple[str, str, str]]


def text(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def instants() -> st.SearchStrategy[str]:
    """Mostly month starts and a second either side of them, else any minute of two years."""
    month_start = st.integers(0, 30).map(
        lambda m: datetime(2023 + m // 12, m % 12 + 1, 1, tzinfo=UTC)
    )
    near = st.tuples(month_start, st.sampled_from([-1, 0, 0, 1])).map(
        lambda pair: pair[0] + timedelta(seconds=pair[1])
    )
    anywhere = st.integers(0, 2 * 365 * 24 * 60).map(lambda m: FIRST + timedelta(minutes=m))
    return st.one_of(near, anywhere).map(text)


def histories() -> st.SearchStrategy[History]:
    event = st.tuples(st.sampled_from(KINDS), instants(), st.sampled_from(STATUSES))
    registration = st.tuples(st.just("registered"), instants(), st.just("active"))
    return st.tuples(registration, st.lists(event, max_size=6)).map(
        lambda pair: [pair[0], *pair[1]]
    )


def direct(
    histories: dict[str, History], period: Period, start: date, end: date
) -> list[tuple[int, int]]:
    """(active at start, churned) per period, by replaying each history at each period start."""
    result = []
    for first, following in period_bounds(period, start, end):
        lo = text(datetime.combine(first, datetime.min.time(), UTC))
        hi = text(datetime.combine(following, datetime.min.time(), UTC))
        active = []
        for history in histories.values():
            seen = [status for _, at, status in history if at < lo]
            if history[0][1] < lo and seen and seen[-1] == "active":
                active.append(history)
        churned = sum(
            any(kind == "churned" and lo <= at < hi for kind, at, _ in history)
            for history in active
        )
        result.append((len(active), churned))
    return result


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from("abcdefgh"), histories(), max_size=8))
def test_counted_churn_equals_the_definition(drawn: dict[str, History]) -> None:
    periods: tuple[Period, ...] = ("month", "quarter", "year")
    for period in periods:
        start, end = date(2022, 11, 1), date(2025, 9, 1)
        counted = churn_periods(drawn, period, start, end)
        assert [(p["active_at_start"], p["churned"]) for p in counted] == direct(
            drawn, period, start, end
        ), period
