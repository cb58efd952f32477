"""The catch-up tracker: when a feed counts as catching up, what it logs (start, a progress
line per interval, the end; nothing for batches that follow live writes), rate and ETA."""

from __future__ import annotations

import time
from typing import Any

from consumers.catch_up import CatchUpProgress, CatchUpTracker


class Lines:
    """Collects log calls (event, fields) like a structlog logger receives them."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))

    @property
    def events(self) -> list[str]:
        return [event for event, _ in self.lines]


class Feed:
    """A backlog that shrinks as batches are applied."""

    def __init__(self, backlog: int, head: int) -> None:
        self.backlog, self.head = backlog, head

    def look(self) -> tuple[int, int, int]:
        return self.head - self.backlog, self.head, self.backlog

    def apply(self, count: int) -> tuple[int, bool]:
        applied = min(count, self.backlog)
        self.backlog -= applied
        return applied, applied == count


def test_live_batches_log_nothing_even_when_full() -> None:
    lines, feed = Lines(), Feed(backlog=1_500, head=10_000)
    tracker = CatchUpTracker("runner", feed.look, threshold=5_000, logger=lines)
    for _ in range(50):
        feed.backlog = 1_500  # a steady stream of writes, never a backlog worth reporting
        count, full = feed.apply(1_000)
        tracker.batch(count, full=full)
    assert lines.lines == [] and tracker.progress().state == "live"


def test_a_backlog_is_reported_at_start_every_interval_and_at_the_end() -> None:
    lines, feed = Lines(), Feed(backlog=40_000, head=40_000)
    tracker = CatchUpTracker("runner", feed.look, threshold=5_000, log_every=0.05, logger=lines)
    started = tracker.check()
    assert started.state == "catching_up" and started.remaining == 40_000
    assert lines.events == ["runner.catching_up"]
    assert lines.lines[0][1] == {"backlog": 40_000, "position": 0, "head": 40_000}
    while True:
        count, full = feed.apply(1_000)
        tracker.batch(count, full=full)
        if not full:
            break
        time.sleep(0.01)
        middle = tracker.progress()
        assert middle.state == "catching_up" and middle.remaining == feed.backlog
    progress = [fields for event, fields in lines.lines if event == "runner.catch_up_progress"]
    assert 1 <= len(progress) < 40  # throttled: not a line per batch
    assert all(p["remaining"] + p["applied"] == 40_000 for p in progress)
    assert lines.events[-1] == "runner.caught_up" and lines.lines[-1][1]["applied"] == 40_000
    done = tracker.progress()
    assert done.state == "live" and done.eta_seconds == 0.0 and done.applied == 40_000


def test_rate_and_eta() -> None:
    halfway = CatchUpProgress("catching_up", 5_000, 5_000, 15_000, 10_000, 2.0, "t")
    assert halfway.rate_per_s == 2_500 and halfway.eta_seconds == 4.0
    unknown = CatchUpProgress("catching_up", 0, 0, 10_000, 10_000, 0.0, "t")
    assert unknown.eta_seconds is None
    assert set(halfway.to_dict()) == {
        "state",
        "since",
        "applied",
        "position",
        "head",
        "remaining",
        "rate_per_s",
        "eta_seconds",
    }
