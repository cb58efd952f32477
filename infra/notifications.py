"""Waiting for PostgreSQL notifications (``LISTEN``): how followers of the store's log sleep
until a write instead of polling it.

A :class:`Listener` holds one connection of its own (beside the pools), opened on the first
:meth:`~Listener.wait`; a lost connection raises a transient error
(:mod:`infra.resilience`) and the next wait after :meth:`~Listener.close` connects again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import psycopg

from infra.resilience import Supervisor
from infra.threads import ThreadWorker


class Listener:
    """Waits for a notification on any of ``channels`` of the database at ``url``."""

    def __init__(self, url: str, channels: Sequence[str]) -> None:
        self.url = url
        self.channels = list(channels)
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None

    def open(self) -> psycopg.Connection[tuple[object, ...]]:
        """Listen from now on (idempotent): call it before reading what is already there, so
        that no write in between goes unnoticed. Raises ``psycopg.OperationalError`` when
        the server is away."""
        if self._connection is None:
            connection = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            for channel in self.channels:
                connection.execute(f'LISTEN "{channel}"')
            self._connection = connection
        return self._connection

    def wait(self, timeout: float) -> bool:
        """Whether a notification came within ``timeout`` seconds (listening first if
        needed); raises ``psycopg.OperationalError`` when the server is away."""
        return any(True for _ in self.open().notifies(timeout=timeout, stop_after=1))

    def close(self) -> None:
        """Drop the connection (idempotent); the next :meth:`wait` opens a new one."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


class Wakeup(ThreadWorker):
    """Calls ``wake`` after each notification ``listener`` receives, in a thread of its own
    (a ``bootstrap.processes.Worker``): what lets a follower of the log poll seldom and
    still start at once after a write. Outages are waited out
    (:class:`~infra.resilience.Supervisor`)."""

    def __init__(self, listener: Listener, wake: Callable[[], object], name: str) -> None:
        super().__init__(name)
        self.listener = listener
        self.wake = wake

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self.listener.close()

    def loop(self) -> None:
        Supervisor(self.name, self.stopping, recover=self.listener.close).run(self._step)

    def _step(self) -> None:
        if self.listener.wait(timeout=1.0):  # a second at most: stop() is noticed
            self.wake()
