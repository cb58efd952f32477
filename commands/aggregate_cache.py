"""Customers kept in memory between units of work, so a command never re-folds its
customer's history, whatever its size.

Loading a customer from the store reads its newest snapshot and every event after it, and opens
(decrypts, decodes, applies) each one: on a customer with 7,000 purchases that is ~1.5 MB per
unit of work, and on the everyday mix it was 39 % of the writer's CPU (issue 16), where a
command itself records one event. The command service keeps customers here after a successful
commit and hands them to the next unit of work, which brings them up to date
(:func:`infra.bulk_load.load_many`), as if loaded afresh.

* **A checked cache: events stay the truth.** Before a kept customer is used, the store is
  asked for its events from the kept version on, in the same query as the other loads: the
  event stored at the kept version must be the very one the customer was kept at (same digest
  of its stored bytes, kept with the customer; else, as after a restore and new writes, the
  customer is dropped and loaded afresh), and every newer event (another process's write, an
  erasure) is applied first. The store's version check still refuses a write built on an old
  state, and the unit is retried on fresh state.
* **Ownership, not sharing.** :meth:`take` removes what it returns; a unit of work owns its
  aggregates until :meth:`keep` returns them after its commit. A unit that fails (a rejected
  write, a conflict, an error) returns nothing, so no half-applied state is ever reused and
  no copy is needed. Only the group-commit leader (one thread at a time) uses the cache.
* **Bounded.** Customers are kept up to ``budget_bytes``, each counted as its stored size (its
  footprint, :mod:`infra.snapshots`) plus ``ENTRY_BYTES`` for the objects that hold it, least
  recently used first out. ``budget_bytes`` 0 turns the cache off.
* **Personal data.** A kept customer holds what its events hold, in clear, as during a unit of
  work. An erased customer is never kept, and :meth:`watch` drops, at the start of every unit,
  the customers erased by ANY writer since its last call, with the holders of copies of their
  data (``Erased.copies_at``), after forgetting their data keys and footprints whatever the
  budget (:meth:`infra.store.EventStore.forget_erased`): an erased person's data outlives its
  erasure in no cache, even one of another process. Whatever else changes how a customer's
  stored events read without an event of its own must go through :meth:`drop`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from uuid import UUID

from domain.customer import Customer
from domain.values import Status
from infra.snapshots import Footprints
from infra.store import EventStore

ENTRY_BYTES = 2048  # a kept customer's objects beyond its stored bytes (measured: ~1.5 kB)


class AggregateCache:
    """Customers by id, with their stored size; least recently used first."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._kept: OrderedDict[UUID, tuple[Customer, bytes, int]] = OrderedDict()
        self._bytes = 0
        self._erasures_seen = 0  # no one erased at or before this position is kept

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def size_bytes(self) -> int:
        """Bytes counted for the customers kept (stored bytes plus ``ENTRY_BYTES`` each)."""
        return self._bytes

    def take(self, customer_ids: Iterable[UUID]) -> dict[UUID, tuple[Customer, bytes]]:
        """Remove and return the kept customers among ``customer_ids``, each with the digest of
        its version's stored event (:func:`infra.snapshots.row_digest`, for
        :func:`infra.bulk_load.load_many` to check that the store still holds that event)."""
        taken = {}
        for customer_id in customer_ids:
            entry = self._kept.pop(customer_id, None)
            if entry is not None:
                taken[customer_id] = (entry[0], entry[1])
                self._bytes -= entry[2]
        return taken

    def keep(self, customers: Iterable[Customer], footprints: Footprints) -> None:
        """Keep customers whose state is what the store holds (after a commit), unless erased;
        evict the least recently used beyond the budget."""
        for customer in customers:
            footprint = footprints.get(customer.id)
            if (
                footprint is None
                or footprint.version != customer.version
                or footprint.digest is None
            ):
                continue  # size or event unknown (an erasure, a forgotten footprint): no guess
            size = footprint.load_bytes + ENTRY_BYTES
            if size > self.budget_bytes or customer.status == Status.ERASED:
                continue
            self.drop([customer.id])
            self._kept[customer.id] = (customer, footprint.digest, size)
            self._bytes += size
        while self._bytes > self.budget_bytes:
            _, (_, _, size) = self._kept.popitem(last=False)
            self._bytes -= size

    def drop(self, customer_ids: Iterable[UUID]) -> None:
        """Forget customers (the next unit of work loads them from the store)."""
        self.take(customer_ids)

    def watch(self, store: EventStore) -> None:
        """Forget what the customers erased in ``store`` since the last look, by any writer,
        leave in this process (their data keys and footprints: :meth:`EventStore.forget_erased`,
        even with the cache off or empty), then drop them and the holders of copies of their
        data from the cache: one small query, one more for the store's erasures when any, and
        one for the cache's when it holds customers and one was erased since its last look.

        The cache follows the erasures with its own position: the store's forgetting is done
        by whichever thread looks first (a reader of the API as well), so what that look found
        is not what this cache has yet to drop."""
        store.forget_erased()
        newest = store.newest_erasure
        if self._kept and newest > self._erasures_seen:
            for _, erased in store.erasures(self._erasures_seen, newest):
                self.drop([erased.originator_id, *(UUID(c) for c in erased.copies_at)])
        self._erasures_seen = max(newest, self._erasures_seen)  # an empty cache holds no one
