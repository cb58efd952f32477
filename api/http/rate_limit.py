"""Rate limiting per API key (``CLIENTELE_RATE_LIMIT``, e.g. ``"100/second;2000/minute"``).

Each authenticated key has its own moving windows (the ``limits`` library, in this process's
memory: N API processes admit up to N times the limit). A request over any of the limits is
answered 429 ``/problems/rate-limited`` with ``Retry-After`` (whole seconds until the window
admits it again); refused requests do not count against the key. Requests without a valid key
are not counted (they are refused by authentication).
"""

from __future__ import annotations

import math
import threading
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimited(Exception):
    """The key went over ``limit``; it may try again in ``retry_after`` seconds (>= 1)."""

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(f"this API key is limited to {limit}; retry in {retry_after} s")
        self.limit = limit
        self.retry_after = retry_after


class KeyRateLimiter:
    """The configured limits (``spec`` in the ``limits`` notation, ``;``-separated; empty:
    no limit) applied per key id."""

    def __init__(self, spec: str) -> None:
        self._items: list[RateLimitItem] = parse_many(spec) if spec.strip() else []
        self._windows = MovingWindowRateLimiter(MemoryStorage())
        self._lock = threading.Lock()  # test every window, then count in all of them

    def admit(self, key_id: str) -> None:
        """Count one request of ``key_id``; :class:`RateLimited` when a limit is reached."""
        if not self._items:
            return
        with self._lock:
            full = [item for item in self._items if not self._windows.test(item, key_id)]
            if not full:
                for item in self._items:
                    self._windows.hit(item, key_id)
                return
        now = time.time()
        waits = {
            item: self._windows.get_window_stats(item, key_id).reset_time - now for item in full
        }
        item = max(waits, key=lambda found: waits[found])
        raise RateLimited(str(item), max(1, math.ceil(waits[item])))
