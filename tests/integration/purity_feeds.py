"""The faults and the second live feed of the live-equals-rebuild test: projectors that refuse
chosen customers until fixed, and ``customer.events`` partitioned, redelivered and
dead-lettered as Kafka hands it to ``clientele consume``."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from uuid import UUID

from consumers.embedded import EmbeddedRunner
from consumers.store_feed import StoreFeed
from infra.envelope import Envelope
from infra.parking import Parked
from infra.read_tx import Tx
from infra.readstore import ReadStore
from projections.framework import Binding, Projector, park, project
from projections.registry import all_projectors

PARTITIONS = 3


class Refusing:
    """Projectors that refuse the customers in ``refused`` (by projection name) — a projector
    bug until :meth:`fix` — built from the real ones, so a rebuild compares alike."""

    def __init__(self) -> None:
        self.refused: dict[str, set[str]] = {}
        self.projectors = [self._refusing(p) for p in all_projectors()]

    def _refusing(self, projector: Projector) -> Projector:
        base, refused = type(projector), self.refused.setdefault(projector.name, set())

        def apply(this: Projector, tx: Tx, envelopes: Sequence[Envelope]) -> None:
            if refused & {e.customer_key for e in envelopes}:
                raise ValueError(f"{this.name} refuses one of these customers")
            base.apply(this, tx, envelopes)

        refusing: Projector = type(f"Refusing{base.__name__}", (base,), {"apply": apply})()
        return refusing

    def refuse(self, projection: int, customer: UUID) -> None:
        self.refused[self.projectors[projection].name].add(str(customer))

    def fix(self) -> None:
        for customers in self.refused.values():
            customers.clear()


class KafkaLike:
    """``customer.events`` as Kafka hands it over to ``clientele consume``: a partition per
    customer key, in order; partitions consumed in any interleaving; after a crash, consumed
    messages come again. Segments follow the store's log, as ``consume`` runs them."""

    def __init__(
        self,
        feed: StoreFeed,
        read_store: ReadStore,
        projectors: Sequence[Projector],
        batch_size: int,
    ) -> None:
        self.feed, self.read_store = feed, read_store
        self.bindings = [Binding.live(p) for p in projectors if not p.log_order]
        log_ordered = [p for p in projectors if p.log_order]
        self.log = EmbeddedRunner(feed, read_store, log_ordered, batch_size=batch_size)
        self.published = 0
        self.partitions: list[list[Envelope]] = [[] for _ in range(PARTITIONS)]
        self.offsets = [0] * PARTITIONS

    def relay(self) -> None:
        for envelope in self.feed.read_sealed(self.published, 1_000_000):
            key = zlib.crc32(envelope.customer_key.encode()) % PARTITIONS
            self.partitions[key].append(envelope)
            self.published = envelope.position

    def deliver(self, partition: int, count: int) -> None:
        start = self.offsets[partition]
        batch = self.partitions[partition][start : start + count]
        opened = [self.feed.store.personal.open_envelope(e) for e in batch]
        with self.read_store.transaction() as tx:
            project(tx, self.bindings, opened, by_position=False)
        self.offsets[partition] = start + len(batch)

    def crash(self, partition: int, count: int) -> None:
        self.offsets[partition] = max(0, self.offsets[partition] - count)

    def lose(self, partition: int) -> None:
        """The partition's next message is dead-lettered: the consumer parks its customer in
        every projection it feeds (as ``ProjectionConsumer`` does) and moves on."""
        start = self.offsets[partition]
        for envelope in self.partitions[partition][start : start + 1]:
            held = Parked(envelope.customer_key, envelope.version, envelope.position, "lost")
            with self.read_store.transaction() as tx:
                for binding in self.bindings:
                    park(tx.with_tables(binding.tables), binding.projector, [held])
            self.offsets[partition] = start + 1

    def drain(self) -> None:
        self.relay()
        for partition, queue in enumerate(self.partitions):
            self.deliver(partition, len(queue))
        self.log.catch_up()
