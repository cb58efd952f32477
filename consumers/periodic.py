"""Periodic work inside a long-running process (segment refresh, seals, the membership
publisher): a task runs every so many seconds in a thread of its own.

Quiet when idle: a run that did nothing (its result is falsy: 0, None, an empty list) logs at
DEBUG, one that did something at INFO. A failing run is retried with backoff until it
succeeds, and an outage is waited out (:class:`~infra.resilience.Supervisor`)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from infra.resilience import Stopped, Supervisor
from infra.threads import ThreadWorker

log = structlog.get_logger(__name__)


class Every(ThreadWorker):
    """Runs ``task`` every ``seconds`` in a daemon thread until stopped."""

    def __init__(self, seconds: float, task: Callable[[], object], name: str) -> None:
        super().__init__(name)
        self.seconds = seconds
        self.task = task

    def loop(self) -> None:
        supervisor = Supervisor(self.name, self.stopping)
        while not self.stopping.wait(self.seconds):
            try:
                result = supervisor.call(self.task)
            except Stopped:
                return
            if result:
                log.info("periodic.ran", task=self.name, result=result)
            else:
                log.debug("periodic.ran", task=self.name, result=result)
