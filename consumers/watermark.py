"""Exact positions for the projections fed from Kafka: read-your-writes on many partitions.

``customer.events`` is read partition by partition, and one partition may run ahead of
another: the highest position a batch applied says nothing of a lower one still unread on
another partition. So the position of a projection fed from the topic is a watermark W:
every customer event at a store position ``<= W`` is applied, or waits behind its customer's
parked event (parked by the projection, or by the relay: not on the topic then).
``X-Min-Position`` relies on it (:func:`consumers.status.behind`).

In each batch's transaction, after the batch was applied, W walks the store's log from where
it stands (positions, customers and versions only:
:func:`infra.feed_queries.refs_in_log_order`) over the events that pass: those of the batch
(applied or parked by it), those of a customer the projection holds at that version or later,
those at or after the version a customer is parked at. It stops before the first that does
not. Feeders and re-drives of one projection lock its state row first, so they take turns;
the last to commit sees all that was applied before it, so W reaches the newest applied event
as soon as nothing below it is missing, whichever member of the group applied what. The log
is looked at in windows doubling from :data:`FIRST_WINDOW` events (a batch usually stops in
its first after its own), at most :data:`MAX_SCAN` events per transaction; the consumer goes
on when idle (``unfinished``). The positions of the batches a consumer committed pass without
a look at the read models (:meth:`Watermarks.transaction`): once applied or parked, an event
stays so (a re-drive applies it, a rebuild swaps in tables that hold it or park it again).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache

from domain.events import EVENT_TYPES
from infra.envelope import Envelope
from infra.feed_queries import LogRef, refs_in_log_order
from infra.read_tx import Tx
from infra.readstore import ReadStore
from infra.store import EventStore
from projections.framework import Binding, Projector, now_iso, versions

FIRST_WINDOW = 16  # events looked at first, then twice as many each time all passed
PAGE = 2000  # most refs read from the store per query
MAX_SCAN = 20_000  # events one transaction walks over at most (per projection)
NEVER = 1 << 62  # the version a customer nobody holds back is held at
REMEMBERED = 500_000  # most committed positions above the lowest watermark kept in memory


class Watermarks:
    """Moves the positions of projections fed from Kafka (see the module docstring)."""

    def __init__(self, store: EventStore, relay_held: Callable[[], dict[str, int]] | None) -> None:
        """``relay_held``: the customers the relay holds back, with the version each is held
        at (None: nobody is known to be)."""
        self.store = store
        self.relay_held = relay_held or dict
        # more may pass without a batch: a walk stopped at MAX_SCAN, or a re-drive applied
        self.unfinished = False
        self.passed: set[int] = set()  # positions of committed batches above the watermarks
        self._staged: set[int] = set()  # those of the transaction in hand

    @contextmanager
    def transaction(self, read_store: ReadStore) -> Iterator[Tx]:
        """A read-store transaction for batches; once it committed, the positions of the
        batches :meth:`advance` was given in it pass later walks without a look."""
        self._staged = set()
        with read_store.transaction() as tx:
            yield tx
        if len(self.passed) < REMEMBERED:
            self.passed |= self._staged

    def advance(
        self,
        tx: Tx,
        bindings: Sequence[Binding],
        locked: Mapping[str, int],
        batch: Sequence[Envelope],
    ) -> None:
        """Move each binding's position (its row locked in ``tx``, at ``locked``) over the
        events that pass; ``batch``: the envelopes applied (or parked) in ``tx``."""
        batched = {e.position for e in batch if e.type in EVENT_TYPES}
        self._staged |= batched
        done = batched | self.passed
        starts = {b.projector.name: locked[b.projector.name] for b in bindings}
        log = _Log(self.store, min(starts.values(), default=0))
        relay_held = cache(self.relay_held)
        self.unfinished = False
        reached: dict[str, int] = {}
        for binding in bindings:
            name = binding.projector.name
            scoped = tx.with_tables(binding.tables)
            reached[name], more = _walk(
                scoped, binding.projector, log, starts[name], done=done, relay_held=relay_held
            )
            self.unfinished |= more
            if reached[name] > starts[name]:
                tx.execute(
                    "UPDATE projection_state SET position = ?, updated_at = ? WHERE name = ?",
                    (reached[name], now_iso(), name),
                )
        lowest = min(reached.values(), default=0)
        self.passed = {position for position in self.passed if position > lowest}


class _Log:
    """The store's customer events after ``start``, as far as looked at."""

    def __init__(self, store: EventStore, start: int) -> None:
        self.store = store
        self.refs: list[LogRef] = []
        self.last = start
        self.complete = False

    def after(self, position: int, count: int) -> list[LogRef]:
        """Up to ``count`` events after ``position`` (``>=`` the start), in log order."""
        first = bisect_right(self.refs, position, key=lambda ref: ref[0])
        while len(self.refs) - first < count and not self.complete:
            size = min(PAGE, max(4 * count, 256))
            page = refs_in_log_order(self.store, self.last, size)
            self.refs += page
            self.last = page[-1][0] if page else self.last
            self.complete = len(page) < size
        return self.refs[first : first + count]


def _walk(
    tx: Tx,
    projector: Projector,
    log: _Log,
    start: int,
    *,
    done: set[int],
    relay_held: Callable[[], dict[str, int]],
) -> tuple[int, bool]:
    """How far from ``start`` every event passes for ``projector`` (``tx`` maps its tables),
    and whether the walk stopped at :data:`MAX_SCAN` rather than at an event or the end."""
    reached, window, looked = start, FIRST_WINDOW, 0
    while looked < MAX_SCAN:
        refs = log.after(reached, window)
        if not refs:
            return reached, False
        others = [ref for ref in refs if ref[0] not in done]
        seen = versions(tx, projector, sorted({c for _, c, _ in others})) if others else {}
        behind = sorted({c for _, c, v in others if v > seen.get(c, 0)})
        held = projector.parking.held(tx, behind) if behind else {}
        for position, customer, version in refs:
            passes = (
                position in done
                or version <= seen.get(customer, 0)
                or version >= held.get(customer, NEVER)
                or version >= relay_held().get(customer, NEVER)
            )
            if not passes:
                return reached, False
            reached = position
        looked += len(refs)
        window = min(2 * window, PAGE)
    return reached, True
