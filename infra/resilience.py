"""Outages are waited out, not crashed on: which errors are worth waiting for, and the one
retry loop every long-running process and periodic task goes through.

An error is **transient** when the dependency behind it may answer again on its own: a lost
or refused PostgreSQL connection, a pool that could not hand one out in time, a lock or
serialisation timeout, a busy SQLite file, a Kafka error the client marks retriable
(connection, timeout, leader changes), a socket error. It is **fatal** when only a person can
fix it (:class:`ConfigurationError`, Kafka authentication and authorisation failures): the
process exits. Anything else is a defect or bad data met by a loop: it is logged with its
traceback and retried with the same backoff, never skipped.

:class:`Supervisor` runs a step again until it succeeds, waiting between attempts with
bounded exponential backoff and jitter (tenacity's ``wait_exponential_jitter``; settings
``CLIENTELE_BACKOFF_INITIAL_SECONDS`` and ``CLIENTELE_BACKOFF_MAX_SECONDS``). An outage
gives exactly two log lines: ``outage.waiting`` (with the error) when the first attempt
fails and ``outage.ended`` (with the seconds waited) when an attempt succeeds again; the
attempts in between log at DEBUG. The dependency's gauge
(``clientele_dependency_up{dependency}``) follows.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import eventsourcing.persistence as es
import psycopg
import structlog
import tenacity
from kafka.errors import (
    AuthorizationError,
    KafkaError,
    SaslAuthenticationFailedError,
)
from prometheus_client import Gauge

from infra.logging import exception_text
from infra.settings import ConfigurationError

log = structlog.get_logger(__name__)
T = TypeVar("T")

DATABASE = "database"
KAFKA = "kafka"
NETWORK = "network"  # a socket error no client library wrapped
DEPENDENCY_UP = Gauge(
    "clientele_dependency_up",
    "1 while the dependency answers this process, 0 during an outage it waits out",
    ["dependency"],
)


_DATABASE_ERRORS = (
    psycopg.OperationalError,  # lost/refused connection, pool timeout, lock timeout, deadlock
    psycopg.InterfaceError,  # "the connection is closed"
    es.OperationalError,  # eventsourcing's wrappers of the two above
    es.InterfaceError,
)
_FATAL = (ConfigurationError, AuthorizationError, SaslAuthenticationFailedError)


class Waiting(Exception):
    """Raised by what cannot serve yet because it still waits out ``dependency``'s outage
    (e.g. the API's start-up): :func:`dependency` names it, so callers answer "unavailable"."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(detail)
        self.dependency = dependency


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it was raised from (``__cause__``/``__context__``), bounded."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 8 and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def dependency(error: BaseException) -> str | None:
    """The dependency (:data:`DATABASE`, :data:`KAFKA`, :data:`NETWORK`) whose outage
    ``error`` shows, or None when it is not transient (see the module docstring)."""
    for cause in _causes(error):
        if isinstance(cause, _FATAL):
            return None
        if isinstance(cause, Waiting):
            return cause.dependency
        if isinstance(cause, _DATABASE_ERRORS):
            return DATABASE
        if isinstance(cause, sqlite3.OperationalError):
            text = str(cause).lower()
            if "locked" in text or "busy" in text:
                return DATABASE
        if isinstance(cause, KafkaError):
            return KAFKA if cause.retriable else None
        if isinstance(cause, ConnectionError | TimeoutError):
            return NETWORK
    return None


def transient(error: BaseException) -> bool:
    """Worth retrying as it is: the dependency may answer again (module docstring)."""
    return dependency(error) is not None


def fatal(error: BaseException) -> bool:
    """Only a person can fix it (a configuration error): the process should exit."""
    return any(isinstance(cause, _FATAL) for cause in _causes(error))


def mark(name: str, up: bool) -> None:
    """Set the gauge of dependency ``name`` (1 up, 0 down)."""
    DEPENDENCY_UP.labels(name).set(1.0 if up else 0.0)


@dataclass(frozen=True)
class Backoff:
    """Seconds between attempts: ``initial`` doubling up to ``maximum``, each plus up to
    ``initial`` of random jitter (so processes that met one outage do not retry in step)."""

    initial: float = 0.5
    maximum: float = 5.0

    def wait(self) -> tenacity.wait.wait_base:
        return tenacity.wait_exponential_jitter(
            multiplier=self.initial, max=self.maximum, jitter=self.initial
        )


_configured = Backoff()


def configure(backoff: Backoff) -> None:
    """Use ``backoff`` for every supervisor made from now on (the composition root calls it
    once with the configured settings)."""
    global _configured  # noqa: PLW0603 - chosen once per process, like logging
    _configured = backoff


def configured() -> Backoff:
    return _configured


class Stopped(Exception):
    """The supervisor was stopped while waiting: the step did not succeed."""


class Supervisor:
    """Runs the steps of one loop (``name``: what it is, e.g. ``relay``) until ``stopping``
    is set; an attempt that fails is tried again after a backoff, ``recover`` (if given) runs
    before each new attempt to drop what the failure may have broken (a listening
    connection, cached positions). Fatal errors propagate; nothing else does, unless
    ``only_transient`` (start-up: a defect or a bad setting there is not retried)."""

    def __init__(
        self,
        name: str,
        stopping: threading.Event,
        *,
        recover: Callable[[], object] | None = None,
        backoff: Backoff | None = None,
        only_transient: bool = False,
    ) -> None:
        self.name = name
        self.stopping = stopping
        self.recover = recover
        self._down: str | None = None  # the dependency whose outage the current call waits out
        retried = transient if only_transient else (lambda error: not fatal(error))
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(retried),
            wait=(backoff or configured()).wait(),
            stop=lambda _: self.stopping.is_set(),
            sleep=self._sleep,
            before_sleep=self._failed,
            reraise=True,
        )

    def run(self, step: Callable[[], object]) -> None:
        """Call ``step`` again and again until ``stopping`` is set."""
        while not self.stopping.is_set():
            try:
                self.call(step)
            except Stopped:
                return

    def call(self, step: Callable[[], T]) -> T:
        """``step()``'s result, after as many attempts as it takes; raises :class:`Stopped`
        when ``stopping`` is set before one succeeded, and fatal errors as they are."""
        started = time.monotonic()
        try:
            for attempt in self._retrying:
                with attempt:
                    result = step()
        except Exception as error:
            if not self.stopping.is_set():  # fatal, or not retried at all
                log.error("process.fatal", process=self.name, error=repr(error))
                raise
            raise Stopped from error
        state = attempt.retry_state
        if state.attempt_number > 1:
            self._ended(state, time.monotonic() - started)
        return result

    def _sleep(self, seconds: float) -> None:
        self.stopping.wait(seconds)  # a stop ends the wait at once

    def _failed(self, state: tenacity.RetryCallState) -> None:
        """After a failed attempt, before the backoff: say so (once per outage), recover."""
        assert state.outcome is not None
        error = state.outcome.exception()
        assert error is not None
        name = dependency(error)
        fields: dict[str, Any] = {
            "process": self.name,
            "attempt": state.attempt_number,
            "error": f"{type(error).__name__}: {error}".strip(),
            "retry_in_seconds": round(state.upcoming_sleep, 2),
        }
        if name is None:  # not an outage: a defect or bad data, shown each time
            log.error("process.step_failed", exception=exception_text(error), **fields)
        elif self._down is None:
            self._down = name
            mark(name, up=False)
            log.warning("outage.waiting", dependency=name, **fields)
        else:
            log.debug("outage.still_waiting", dependency=name, **fields)
        if self.recover is not None:
            try:
                self.recover()
            except Exception as broken:  # recovering is best effort: the next attempt tells
                log.debug("process.recover_failed", process=self.name, error=repr(broken))

    def _ended(self, state: tenacity.RetryCallState, waited: float) -> None:
        fields = {"process": self.name, "attempts": state.attempt_number}
        if self._down is None:
            log.info("process.step_recovered", **fields)
            return
        mark(self._down, up=True)
        log.info("outage.ended", dependency=self._down, waited_seconds=round(waited, 2), **fields)
        self._down = None
