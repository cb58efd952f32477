"""Large customers kept in memory between units of work, so a command on them costs the same
whatever their history.

Loading a customer from the store reads its state: every purchase it ever recorded. On a
customer with 7,000 purchases that is ~1.5 MB to read and decode for each unit of work, where a
purchase itself is a few hundred bytes. The command service keeps such customers here after a
successful commit and hands them to the next unit of work, which brings them up to date with
their newer events only (:func:`infra.bulk_load.load_many`), as if loaded afresh.

* **Ownership, not sharing.** :meth:`take` removes what it returns; a unit of work owns its
  aggregates until :meth:`keep` returns them after its commit. A unit that fails (a rejected
  write, a conflict, an error) returns nothing, so no half-applied state is ever reused and
  no copy is needed. Only the group-commit leader (one thread at a time) uses the cache.
* **Never stale for decisions.** Another process may have written since: the newer events are
  read and applied before any command runs, and the store's version check refuses a write
  built on an old state anyway.
* **Only what is worth it, bounded.** Customers whose load reads less than ``min_bytes`` cost
  little to load and are not kept. The others are kept up to ``budget_bytes`` of stored size
  (their footprint, :mod:`infra.snapshots`), least recently used first out. ``budget_bytes``
  0 turns the cache off.
* **Personal data.** A kept customer holds what its events hold, in clear, as during a unit of
  work; its own newer events (an erasure included) are applied before it is used again, and an
  erased customer is never kept. Whatever changes how a customer's stored events read without
  an event of its own must go through :meth:`drop`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from uuid import UUID

from domain.customer import Customer
from domain.values import Status
from infra.snapshots import Footprints

MIN_BYTES = 64 * 1024  # a load of less decodes in about a millisecond


class AggregateCache:
    """Customers by id, with their stored size; least recently used first."""

    def __init__(self, budget_bytes: int, min_bytes: int = MIN_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self.min_bytes = min_bytes
        self._kept: OrderedDict[UUID, tuple[Customer, int]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def size_bytes(self) -> int:
        """Stored bytes of the customers kept."""
        return self._bytes

    def take(self, customer_ids: Iterable[UUID]) -> dict[UUID, Customer]:
        """Remove and return the kept customers among ``customer_ids``."""
        taken = {}
        for customer_id in customer_ids:
            entry = self._kept.pop(customer_id, None)
            if entry is not None:
                taken[customer_id] = entry[0]
                self._bytes -= entry[1]
        return taken

    def keep(self, customers: Iterable[Customer], footprints: Footprints) -> None:
        """Keep customers whose state is what the store holds (after a commit) and whose load
        reads at least ``min_bytes``; evict the least recently used beyond the budget."""
        for customer in customers:
            footprint = footprints.get(customer.id)
            if footprint is None or footprint.version != customer.version:
                continue  # size unknown (an erasure, a forgotten footprint): not worth a guess
            size = footprint.load_bytes
            if (
                size < self.min_bytes
                or size > self.budget_bytes
                or customer.status == Status.ERASED
            ):
                continue
            self.drop([customer.id])
            self._kept[customer.id] = (customer, size)
            self._bytes += size
        while self._bytes > self.budget_bytes:
            _, (_, size) = self._kept.popitem(last=False)
            self._bytes -= size

    def drop(self, customer_ids: Iterable[UUID]) -> None:
        """Forget customers (the next unit of work loads them from the store)."""
        self.take(customer_ids)
