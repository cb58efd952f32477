"""Periodic work inside a long-running process: re-deciding time-relative segments."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


class Every:
    """Runs ``task`` every ``seconds`` in a daemon thread until stopped; failures are logged."""

    def __init__(self, seconds: float, task: Callable[[], object], name: str) -> None:
        self.seconds = seconds
        self.task = task
        self.name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                result = self.task()
                log.info("periodic.ran", task=self.name, result=result)
            except Exception:
                log.exception("periodic.failed", task=self.name)
