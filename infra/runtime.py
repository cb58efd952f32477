"""Tuning for long-running processes (API, relay, consumers)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def settle_heap() -> None:
    """Take everything alive after start-up out of the garbage collector's sight.

    Modules, settings, schemas and pools live as long as the process; left among the tracked
    objects they make every full collection in the API cost ~50 ms (about 108k objects
    measured), which lands on the p99 of whichever request triggers one. Call once, when
    start-up is done (``gc.freeze``); later garbage is collected as usual.
    """
    gc.collect()
    gc.freeze()


@contextmanager
def settled_heap() -> Iterator[None]:
    """:func:`settle_heap` for one long job (a rebuild, a bench scenario) in a process that
    goes on afterwards (a CLI command run in-process, the bench): unfrozen when it ends, so
    what start-up built can be collected again later. In a process whose heap is frozen
    already (a long-running one settled at start) it stays frozen: that freeze is not ours
    to undo."""
    ours = gc.get_freeze_count() == 0
    settle_heap()
    try:
        yield
    finally:
        if ours:
            gc.unfreeze()
