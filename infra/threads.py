"""A worker that runs in a daemon thread of its own between ``start()`` and ``stop()`` (what
``bootstrap.processes.Worker`` asks of the background parts of a process)."""

from __future__ import annotations

import threading


class ThreadWorker:
    """Runs :meth:`loop` in a daemon thread named ``name``; :meth:`stop` sets :attr:`stopping`
    and waits for the thread (at most ``timeout`` seconds)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def loop(self) -> None:
        """The thread's work, until :attr:`stopping` is set."""
        raise NotImplementedError
