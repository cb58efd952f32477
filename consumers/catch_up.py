"""Progress of a feed working through a backlog: state, events applied, rate, ETA, log lines.

The embedded runner (``serve`` in embedded mode, ``clientele projections catch-up``, the
importer through :func:`consumers.embedded.catch_up_read_models`) reports with it. A feed is
*catching up* while its slowest read model is at least :data:`CATCH_UP_EVENTS` events behind
the store (about a second of work or more), and *live* again once it has read up to the
store's head. Only the start, a progress line every :data:`LOG_EVERY_SECONDS` and the end of
a catch-up are logged at INFO; batches that follow live writes log nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

log = structlog.get_logger(__name__)

CATCH_UP_EVENTS = 5_000
LOG_EVERY_SECONDS = 5.0
State = Literal["catching_up", "live"]


@dataclass(frozen=True)
class CatchUpProgress:
    """One look at a catch-up. ``applied``: events read since it began; ``position``: the
    slowest read model's position; ``head``: the store's newest position; ``remaining``: fed
    events after ``position`` (counted exactly at the last look, less what was applied since);
    ``seconds`` since it began; ``since``: when it began (RFC 3339, UTC)."""

    state: State
    applied: int
    position: int
    head: int
    remaining: int
    seconds: float
    since: str

    @property
    def rate_per_s(self) -> float:
        """Events applied per second since the catch-up began (0.0 at first)."""
        return self.applied / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate (None until a rate is known; 0 when live)."""
        if self.state == "live" or self.remaining == 0:
            return 0.0
        rate = self.rate_per_s
        return round(self.remaining / rate, 1) if rate > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """``{"state", "since", "applied", "position", "head", "remaining", "rate_per_s",
        "eta_seconds"}`` for ``GET /v1/projections``."""
        return {
            "state": self.state,
            "since": self.since,
            "applied": self.applied,
            "position": self.position,
            "head": self.head,
            "remaining": self.remaining,
            "rate_per_s": round(self.rate_per_s, 1),
            "eta_seconds": self.eta_seconds,
        }


Look = Callable[[], tuple[int, int, int]]  # () -> (position, head, remaining)


class CatchUpTracker:
    """Follows one feed's batches. ``look`` counts exactly where the feed stands; it is called
    when a full batch arrives while live (is there a backlog?) and once per log line while
    catching up, never per batch."""

    def __init__(
        self,
        name: str,
        look: Look,
        *,
        threshold: int = CATCH_UP_EVENTS,
        log_every: float = LOG_EVERY_SECONDS,
        logger: Any = log,
    ) -> None:
        self.name = name
        self.look = look
        self.threshold = threshold
        self.log_every = log_every
        self.log = logger
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._next_log = 0.0
        self._progress = CatchUpProgress("live", 0, 0, 0, 0, 0.0, _now())

    def progress(self) -> CatchUpProgress:
        """The latest look (thread-safe: a frozen value replaced whole)."""
        with self._lock:
            return self._progress

    def check(self) -> CatchUpProgress:
        """Look now: begin a catch-up if the backlog is at least the threshold."""
        position, head, remaining = self.look()
        if self._progress.state == "live" and remaining >= self.threshold:
            self._begin(position, head, remaining)
        return self.progress()

    def batch(self, count: int, *, full: bool) -> None:
        """Account for a batch of ``count`` events (``full``: more may be waiting)."""
        current = self._progress
        if current.state == "live":
            if full:
                self.check()
            return
        now = time.monotonic()
        seconds = now - self._started
        applied = current.applied + count
        if not full:
            self._finish(applied, seconds)
        elif now >= self._next_log:
            self._next_log = now + self.log_every
            position, head, remaining = self.look()
            done = self._set(
                replace(current, position=position, head=head, remaining=remaining),
                applied,
                seconds,
            )
            self.log.info(
                f"{self.name}.catch_up_progress",
                applied=done.applied,
                position=done.position,
                head=done.head,
                remaining=done.remaining,
                rate_per_s=round(done.rate_per_s),
                eta_seconds=done.eta_seconds,
            )
        else:  # between looks, what was applied is no longer remaining
            left = max(current.remaining - count, 0)
            self._set(replace(current, remaining=left), applied, seconds)

    def _begin(self, position: int, head: int, remaining: int) -> None:
        self._started = time.monotonic()
        self._next_log = self._started + self.log_every
        with self._lock:
            self._progress = CatchUpProgress(
                "catching_up", 0, position, head, remaining, 0.0, _now()
            )
        self.log.info(
            f"{self.name}.catching_up",
            backlog=remaining,
            position=position,
            head=head,
        )

    def _set(self, looked: CatchUpProgress, applied: int, seconds: float) -> CatchUpProgress:
        progress = replace(looked, applied=applied, seconds=seconds)
        with self._lock:
            self._progress = progress
        return progress

    def _finish(self, applied: int, seconds: float) -> None:
        position, head, remaining = self.look()
        with self._lock:
            self._progress = CatchUpProgress(
                "live", applied, position, head, remaining, seconds, self._progress.since
            )
        self.log.info(
            f"{self.name}.caught_up",
            applied=applied,
            position=position,
            head=head,
            seconds=round(seconds, 1),
            rate_per_s=round(applied / seconds) if seconds > 0 else None,
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
