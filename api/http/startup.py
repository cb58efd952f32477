"""``serve`` started while its database is away: it listens at once and waits in the background.

The services (event store, read store, migrations, background work) are opened in a thread of
their own under a :class:`~infra.resilience.Supervisor`: an outage gives one
``outage.waiting`` line and one ``outage.ended`` line, and until the services are open every
request (``/readyz`` included) answers 503 problem+json naming the dependency, with
``Retry-After`` (:class:`~infra.resilience.Waiting` is what the handlers see). An error that is
not an outage (a bad setting, a defect) is not waited for: it is kept as ``fatal`` and the
server is asked to stop (``serve`` then exits non-zero naming it). ``/healthz`` answers
throughout: the process is alive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import structlog

from bootstrap import build
from bootstrap.api_background import api_background
from infra.resilience import DATABASE, Stopped, Supervisor, Waiting, dependency
from infra.runtime import settle_heap

if TYPE_CHECKING:
    from bootstrap import Services

log = structlog.get_logger(__name__)
JOIN_SECONDS = 30.0


class Startup:
    """The services of the API once open (:attr:`services`), else :meth:`services` raises
    :class:`Waiting`; :attr:`fatal` holds the error that ended the start-up, if any."""

    def __init__(self, on_fatal: Callable[[], object]) -> None:
        self.on_fatal = on_fatal
        self.fatal: BaseException | None = None
        self._services: Services | None = None
        self._waiting_for = DATABASE
        self._last_error: BaseException | None = None
        self._opened = ExitStack()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serve-start-up", daemon=True)

    def services(self) -> Services:
        """The open services, or :class:`Waiting` (naming the dependency) while starting."""
        if self._services is not None:
            return self._services
        detail = f"the API is starting: waiting for the {self._waiting_for}"
        raise Waiting(self._waiting_for, detail) from self._last_error

    def _open(self) -> tuple[Services, ExitStack]:
        try:
            with ExitStack() as attempt:
                services = attempt.enter_context(build())
                attempt.enter_context(api_background(services))
                return services, attempt.pop_all()
        except Exception as error:
            self._waiting_for = dependency(error) or self._waiting_for
            self._last_error = error
            raise

    def _run(self) -> None:
        supervisor = Supervisor("serve start-up", self._stopping, only_transient=True)
        try:
            services, opened = supervisor.call(self._open)
        except Stopped:
            return
        except Exception as error:  # not an outage: only a person can fix it
            self.fatal = error
            self.on_fatal()
            return
        self._opened.enter_context(opened)
        settle_heap()
        self._services = services

    @contextmanager
    def running(self) -> Iterator[Startup]:
        """Open the services in the background; close them (or stop waiting) on exit."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stopping.set()
            self._thread.join(JOIN_SECONDS)
            self._services = None
            self._opened.close()
