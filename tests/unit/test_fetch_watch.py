"""The clock behind ``consumer.fetch_stalled`` (:mod:`consumers.fetch_watch`)."""

from __future__ import annotations

from consumers.fetch_watch import FetchWatch, Stall


def test_a_partition_behind_its_end_that_stands_still_is_a_stall() -> None:
    watch = FetchWatch(stall_seconds=30)
    assert watch.look({0: 5, 1: 9}, {0: 8, 1: 9}, now=0) is None
    assert watch.look({0: 5, 1: 9}, {0: 8, 1: 12}, now=29.9) is None  # 1 only now behind
    stall = watch.look({0: 5, 1: 9}, {0: 8, 1: 12}, now=30)
    assert stall == Stall(30, {0: (5, 8)})
    assert stall.to_dict() == {"0": {"position": 5, "end": 8}}
    assert stall.reason({0, 1}) == (
        "no progress for 30 s behind the topic's end: partition 0 at 5 of 8"
    )
    assert stall.reason({1}).endswith(
        "partition 0 at 5 of 8 (the group's offset, not assigned here)"
    )


def test_moving_caught_up_or_past_the_reported_end_is_never_a_stall() -> None:
    watch = FetchWatch(stall_seconds=10)
    for second in range(0, 100, 5):  # slow but moving
        assert watch.look({0: second}, {0: 1000}, now=second) is None
    assert watch.look({0: 7}, {0: 7}, now=0) is None  # at its end
    assert watch.look({0: 7}, {0: 7}, now=500) is None
    assert watch.look({0: 9}, {0: 7}, now=900) is None  # past a reported end (tansu)
    assert watch.look({0: 9}, {}, now=1000) is None  # the topic is gone: nothing to say


def test_the_clock_starts_again_after_a_restart_or_a_new_assignment() -> None:
    watch = FetchWatch(stall_seconds=10)
    watch.look({0: 1}, {0: 5}, now=0)
    watch.restart()
    assert watch.look({0: 1}, {0: 5}, now=15) is None  # seen anew at 15
    assert watch.look({0: 1}, {0: 5}, now=25) is not None
    watch.look({1: 1}, {1: 5}, now=26)  # partition 0 no longer assigned: forgotten
    assert watch.look({0: 1, 1: 1}, {0: 5, 1: 5}, now=30) is None
