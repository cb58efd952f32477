"""The embedded runner: follows the store's notification log in-process and feeds projectors.

Used in embedded mode for every read model (SQLite has no LISTEN/NOTIFY): a background thread
polls, and is woken at once after each local write. In full mode ``clientele consume`` runs
one for the read models fed in log order (``Projector.log_order``: segments), which need the
global order that Kafka's partitions do not keep. Each batch is read and applied inside one
read-store transaction together with the projections' positions, so a crash or a concurrent
rebuild never loses or double-applies an event, and several runners take turns. A customer
whose event a projection cannot apply is parked for it (the others go on, see
:mod:`projections.framework`) and re-driven from the store when due (:mod:`consumers.redrive`).

A backlog (after an import, or writes made while no runner ran) is worked through in the
background thread while the API answers; its progress (:mod:`consumers.catch_up`) is logged and
reported by ``GET /v1/projections``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from consumers.catch_up import CatchUpProgress, CatchUpTracker
from consumers.migrate import Wired, migrate
from consumers.redrive import Redriven, redrive
from consumers.store_feed import StoreFeed
from infra.envelope import Envelope
from infra.read_tx import Tx
from infra.readstore import ReadStore
from infra.resilience import Stopped, Supervisor
from projections.framework import Binding, Projector, lock_positions, positions, project


class EmbeddedRunner:
    """Feeds ``projectors`` from ``feed`` into ``read_store``."""

    def __init__(
        self,
        feed: StoreFeed,
        read_store: ReadStore,
        projectors: Sequence[Projector],
        *,
        batch_size: int = 1000,
        poll_interval: float = 0.5,
        redrive_interval: float = 1.0,
    ) -> None:
        self.feed = feed
        self.read_store = read_store
        self.bindings = [Binding.live(p) for p in projectors]
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.redrive_interval = redrive_interval
        self._next_redrive = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.tracker = CatchUpTracker("embedded_runner", self._look)

    def _look(self) -> tuple[int, int, int]:
        """(position, head, backlog): the slowest fed projection's position, the store's head,
        and exactly how many fed events follow that position."""
        names = {b.projector.name for b in self.bindings}
        reached = positions(self.read_store)
        position = min((reached.get(name, 0) for name in names), default=0)
        return position, self.feed.head(), self.feed.pending(position)

    def progress(self) -> CatchUpProgress:
        """Catching up or live, with events applied, rate and ETA (see :mod:`consumers.catch_up`)."""
        return self.tracker.progress()

    def backlog(self) -> int:
        """Exactly how many fed events the slowest projection has still to apply."""
        return self._look()[2]

    def run_once(self) -> int:
        """Apply the next batch; returns how many envelopes it read (0 = caught up)."""
        names = [b.projector.name for b in self.bindings]
        with self.read_store.transaction() as tx:
            positions = lock_positions(tx, names)
            after = min(positions.values(), default=0)
            envelopes = apply_from_store(tx, self.feed, self.bindings, after, self.batch_size)
        return len(envelopes)

    def catch_up(
        self,
        max_batches: int = 1_000_000,
        on_batch: Callable[[int], None] | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> int:
        """Apply batches until caught up with the store; returns envelopes read.

        ``on_batch`` is told each batch's size (a progress bar's advance). ``stop``: leave
        after the batch in hand once it is set (the background thread passes its own, so
        :meth:`stop` ends it promptly; a caller's catch-up goes on to the head even after
        :meth:`stop`).
        """
        total = 0
        for _ in range(max_batches):
            count = self.run_once()
            total += count
            full = count >= self.batch_size
            self.tracker.batch(count, full=full)
            if on_batch is not None:
                on_batch(count)
            if not full or (stop is not None and stop.is_set()):
                break
        return total

    def redrive_due(self) -> list[Redriven]:
        """Retry the parked customers whose backoff has passed (from the store)."""
        projectors = [b.projector for b in self.bindings]
        return redrive(self.feed, self.read_store, projectors, due_only=True)

    def wake(self, _position: int | None = None) -> None:
        """Called after a local write: run now instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        """Follow the store in a background thread; a backlog is caught up there while the
        caller goes on (``serve`` answers at once)."""
        self._stop.clear()
        self.tracker.check()
        self._thread = threading.Thread(target=self._loop, name="embedded-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        """Until :meth:`stop`: work, then sleep until woken or the poll interval; failures
        back off and an outage is waited out (:class:`~infra.resilience.Supervisor`)."""
        supervisor = Supervisor("embedded-runner", self._stop)
        pause = 0.0  # a backlog found at start is worked on at once
        while not self._stop.is_set():
            self._wake.wait(pause)
            self._wake.clear()
            try:
                behind = supervisor.call(self._step)
            except Stopped:
                return
            pause = 0.0 if behind else self.poll_interval

    def _step(self) -> bool:
        """Up to 100 batches and the due re-drives; whether a backlog remains."""
        behind = self.catch_up(100, stop=self._stop) >= 100 * self.batch_size
        if time.monotonic() >= self._next_redrive:
            self._next_redrive = time.monotonic() + self.redrive_interval
            self.redrive_due()
        return behind


def apply_from_store(
    tx: Tx,
    feed: StoreFeed,
    bindings: Sequence[Binding],
    after: int,
    limit: int,
    *,
    by_position: bool = True,
) -> list[Envelope]:
    """Read up to ``limit`` fed envelopes after position ``after`` from the store and apply
    them in ``tx``: how every read model is fed from the store (the embedded runner, and
    Kafka consumers catching up after the broker lost their topic with ``by_position=False``,
    as their positions are not watermarks). Returns the envelopes read."""
    envelopes = feed.read(after, limit)
    if envelopes:
        project(tx, bindings, envelopes, by_position=by_position)
    return envelopes


class WithRunner(Wired, Protocol):
    """Services that may have an embedded runner (``bootstrap.Services``)."""

    @property
    def runner(self) -> EmbeddedRunner | None: ...


def catch_up_read_models(
    services: WithRunner, on_batch: Callable[[int], None] | None = None
) -> int:
    """Bring the embedded read models up to the store's head now, in this process; returns
    how many events were applied (0 in full mode, where ``clientele consume`` feeds them).

    For whatever writes to the store while no ``serve`` runs: call it after an import (the
    importer does) or any offline write, so a later ``serve`` starts caught up. Safe beside a
    running ``serve``: both take turns on the projections' positions, nothing is applied twice.
    ``on_batch`` is told the size of each applied batch (for a progress bar; the total to
    expect is ``services.runner.backlog()``). Progress is logged like ``serve``'s catch-up.
    Read-model tables are created first if missing (:func:`~consumers.migrate.migrate`).
    """
    if services.runner is None:
        return 0
    migrate(services)
    return services.runner.catch_up(on_batch=on_batch)
