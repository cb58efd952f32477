"""A rebuild by customer: the store into shadow tables, customer by customer (in workers).

Read models that only need each customer's events in version order are rebuilt, up to the
store's head, from the events grouped by customer: each customer's rows are then loaded and
written about once, not once per batch. Projectors marked ``log_order`` join them up to the
first event that crosses customers (:func:`log_order_cut`: until then each customer's rows
depend on that customer's events alone, so the order between customers cannot show); from
there they are replayed in log order (:mod:`consumers.rebuild`). The store is read and
decoded once for all of them.

On PostgreSQL the customers can be split into ranges of ids, one per worker process, which
replay side by side through the very same :func:`project`; no batch moves a position (those
are set once, at the end). Batches of different customers do not all touch disjoint rows:
each customer's own rows are theirs alone, but some projections add into counts every
customer shares (recommendations: ``recs_items``, ``recs_pairs``, ``recs_totals``,
``recs_categories``, ``recs_category_items``; the lifecycle model's ``analytics_stage_counts``).
Those stay right only because each change there is a commutative increment
(:func:`projections.counts.add_counts`: in any order the same sum), and ``add_counts`` writes
its rows in key order, so two workers lock shared rows in the same order (no deadlock). The
first batch always runs here, so whatever a projection sets up on first use is in place
before workers start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Protocol
from uuid import UUID

from eventsourcing.utils import get_topic

from consumers.store_feed import StoreFeed
from domain.events import EVENT_TYPES
from infra import feed_queries
from infra.envelope import Envelope
from infra.feed_queries import START, Resume
from infra.logging import for_spawned_process
from infra.readstore import ReadStore
from infra.runtime import settled_heap
from infra.store import CUSTOMER_TOPICS, FEED_TOPICS
from projections.framework import Binding, Projector, now_iso, project

Progress = Callable[[int, int], None]  # (position reached or events replayed, store head)
# How a worker process opens its own connections (picklable, e.g. a partial of a function).
Connect = Callable[[], AbstractContextManager[tuple[StoreFeed, ReadStore]]]


class Stopping(Protocol):
    """A flag shared with the workers (a manager's ``Event``)."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class CustomerPass:
    """One pass of a rebuild by customer: up to ``head`` into ``bindings``, whose state rows
    are ``state_names``; those named in ``cuts`` (projection name to position, see
    :func:`log_order_cut`) only up to their cut."""

    bindings: Sequence[Binding]
    state_names: dict[str, str]
    head: int
    batch_size: int
    cuts: Mapping[str, int] = field(default_factory=dict)

    def until(self, binding: Binding) -> int:
        """The last position this pass gives ``binding``."""
        return min(self.head, self.cuts.get(binding.projector.name, self.head))


def log_order_cut(feed: StoreFeed, projector: Projector, head: int) -> int:
    """Up to which position ``projector`` may be replayed customer by customer: ``head``
    unless it is fed in log order; then just before the first event that crosses customers
    for it (any fed event that is not a customer's — segment definitions, refreshes, fits,
    policies, reviews — or a customer event type it ``crosses``), else ``head``."""
    if not projector.log_order:
        return head
    topics = [get_topic(EVENT_TYPES[t]) for t in sorted(projector.crosses)]
    topics += [t for t in FEED_TOPICS if t not in CUSTOMER_TOPICS]
    first = feed_queries.in_log_order(feed.store, 0, 1, topics)
    return min(head, first[0][0].id - 1) if first else head


def rebuild_by_customer(
    feed: StoreFeed,
    read_store: ReadStore,
    work: CustomerPass,
    progress: Progress,
    *,
    workers: int = 1,
    connect: Connect | None = None,
) -> int:
    """Everything up to ``work.head`` (or a projection's cut) into the shadows; returns the
    events applied.

    With ``workers > 1`` and ``connect`` (PostgreSQL only), ranges of customers are replayed
    by that many processes. Afterwards each shadow stands at :meth:`CustomerPass.until`.
    """
    first = feed.read_by_customer(START, work.batch_size, work.head)
    events = _apply(read_store, work, first)
    progress(events, work.head)
    if len(first) == work.batch_size:  # there is more
        after = (first[-1].customer_id, first[-1].version)
        if workers > 1 and connect is not None and read_store.dialect == "postgres":
            events += _in_workers(connect, work, _ranges(after, workers), progress, events)
        else:
            events += _rebuild_range(
                feed, read_store, work, after, None, progress=progress, done=events
            )
    with read_store.transaction() as tx:
        tx.executemany(
            "UPDATE projection_state SET position = ?, updated_at = ? WHERE name = ?",
            [(work.until(b), now_iso(), work.state_names[b.projector.name]) for b in work.bindings],
        )
    return events


def _rebuild_range(
    feed: StoreFeed,
    read_store: ReadStore,
    work: CustomerPass,
    after: Resume,
    before: UUID | None,
    *,
    progress: Progress = lambda _done, _head: None,
    done: int = 0,
) -> int:
    """The customers after ``after`` and below ``before``; returns the events applied."""
    events = 0
    while envelopes := feed.read_by_customer(after, work.batch_size, work.head, before):
        events += _apply(read_store, work, envelopes)
        after = (envelopes[-1].customer_id, envelopes[-1].version)
        progress(min(done + events, work.head), work.head)  # positions count index rows too
    return events


def _apply(read_store: ReadStore, work: CustomerPass, envelopes: Sequence[Envelope]) -> int:
    feeds: list[tuple[list[Binding], Sequence[Envelope]]] = [(list(work.bindings), envelopes)]
    reached = max((e.position for e in envelopes), default=0)
    if work.bindings and reached > min(map(work.until, work.bindings)):
        cuts = sorted({work.until(b) for b in work.bindings}, reverse=True)  # some are past a cut
        feeds = [
            (
                [b for b in work.bindings if work.until(b) == cut],
                [e for e in envelopes if e.position <= cut],
            )
            for cut in cuts
        ]
    with read_store.transaction() as tx:
        for bindings, fed in feeds:
            if bindings and fed:
                project(
                    tx,
                    bindings,
                    fed,
                    by_position=False,
                    advance=False,
                    state_names=work.state_names,
                )
    return len(envelopes)


def _ranges(after: Resume, workers: int) -> list[tuple[Resume, UUID | None]]:
    """``workers`` ranges of customer ids that together cover everything after ``after``."""
    low = after[0].int
    step = ((1 << 128) - low) // workers
    bounds = [UUID(int=low + step * k) for k in range(1, workers)]
    starts: list[Resume] = [after, *((bound, 0) for bound in bounds)]
    return list(zip(starts, [*bounds, None], strict=True))


def _in_workers(
    connect: Connect,
    work: CustomerPass,
    ranges: list[tuple[Resume, UUID | None]],
    progress: Progress,
    done: int,
) -> int:
    events = 0
    context = get_context("spawn")  # not fork: the parent holds connection pools and threads
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(
            len(ranges), mp_context=context, initializer=for_spawned_process()
        ) as pool,
    ):
        stop = manager.Event()
        futures = [pool.submit(_worker, connect, work, *bounds, stop) for bounds in ranges]
        try:
            for future in as_completed(futures):
                events += future.result()
                progress(min(done + events, work.head), work.head)
        except BaseException:
            with suppress(OSError, EOFError):  # the manager may be gone (Ctrl-C reaches it too)
                stop.set()  # the other ranges stop after their current batch
            raise
    return events


class RebuildStopped(RuntimeError):
    """Another range of the same rebuild failed, so this one stopped."""


def _worker(
    connect: Connect, work: CustomerPass, after: Resume, before: UUID | None, stop: Stopping
) -> int:
    """One range, in a worker process with its own connections; ends early once ``stop`` is set."""

    def check(_done: int, _head: int) -> None:
        if stop.is_set():
            raise RebuildStopped("another range of this rebuild failed")

    check(0, 0)
    # this process's start-up is done: the collector scans only the replay's own objects
    with connect() as (feed, read_store), settled_heap():
        return _rebuild_range(feed, read_store, work, after, before, progress=check)
