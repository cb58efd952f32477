"""Periodic work inside a long-running process (segment refresh, seals, the membership
publisher): a task runs every so many seconds in a thread of its own.

Quiet when idle: a run that did nothing (its result is falsy: 0, None, an empty list) logs at
DEBUG, one that did something at INFO. A failing run is retried with backoff until it
succeeds, and an outage is waited out (:class:`~infra.resilience.Supervisor`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from infra.resilience import Stopped, Supervisor

log = structlog.get_logger(__name__)


class Every:
    """Runs ``task`` every ``seconds`` in a daemon thread until stopped."""

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
        supervisor = Supervisor(self.name, self._stop)
        while not self._stop.wait(self.seconds):
            try:
                result = supervisor.call(self.task)
            except Stopped:
                return
            if result:
                log.info("periodic.ran", task=self.name, result=result)
            else:
                log.debug("periodic.ran", task=self.name, result=result)
