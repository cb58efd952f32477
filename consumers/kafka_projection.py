"""Projection consumers: ``customer.events`` → projectors, exactly-once in effect.

Each batch is applied in ONE read-store transaction together with the consumer's next offsets
(table ``consumer_offsets``); on (re)assignment the consumer seeks to the stored offsets. A
crash therefore loses nothing and applies nothing twice, whatever Kafka's own commits say.
Projectors are also idempotent on (customer, version), so rebuilds and redeliveries overlap
harmlessly. A message that cannot be decoded, or whose apply keeps failing, goes to the DLQ
and the partition moves on.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from consumers.dead_letters import send_to_dlq
from infra.envelope import Envelope, EnvelopeError
from infra.personal_data import PersonalData, SealBroken
from projections.framework import Binding, Projector, project
from projections.readstore import ReadStore, Tx

log = structlog.get_logger(__name__)


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: ProjectionConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        """Nothing to do: offsets are already stored with the data."""

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.owner.seek(list(assigned))


class ProjectionConsumer:
    """One consumer-group member feeding ``projectors`` from ``topic``."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        dlq_producer: KafkaProducer,
        *,
        topic: str,
        group: str,
        read_store: ReadStore,
        projectors: Sequence[Projector],
        personal: PersonalData,
        attempts: int = 3,
    ) -> None:
        """``personal`` opens the envelopes' sealed personal data through the key store."""
        self.consumer = consumer
        self.dlq_producer = dlq_producer
        self.topic = topic
        self.group = group
        self.read_store = read_store
        self.bindings = [Binding.live(p) for p in projectors]
        self.personal = personal
        self.attempts = attempts
        self.stopping = threading.Event()
        self.applied = 0

    def subscribe(self) -> None:
        self.consumer.subscribe([self.topic], listener=_SeekToStoredOffsets(self))

    def seek(self, partitions: list[TopicPartition]) -> None:
        """Position every assigned partition at the offset stored with our read models."""
        with self.read_store.transaction() as tx:
            stored: dict[int, int] = dict(
                tx.fetchall(
                    "SELECT partition, next_offset FROM consumer_offsets "
                    "WHERE consumer_group = ? AND topic = ?",
                    (self.group, self.topic),
                )
            )
        for partition in partitions:
            if partition.partition in stored:
                self.consumer.seek(partition, int(stored[partition.partition]))
            else:
                self.consumer.seek_to_beginning(partition)
        log.info(
            "consumer.assigned",
            group=self.group,
            partitions=sorted(p.partition for p in partitions),
        )

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Apply one polled batch; returns the number of records handled."""
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        records = [record for batch in batches.values() for record in batch]
        if not records:
            return 0
        envelopes = self._open(records)
        try:
            with self.read_store.transaction() as tx:
                project(
                    tx, self.bindings, [e for e in envelopes if e is not None], by_position=False
                )
                self._store_offsets(tx, records)
        except Exception:
            log.exception("consumer.batch_failed", group=self.group, records=len(records))
            self._one_by_one(records, envelopes)
        self.applied += len(records)
        return len(records)

    def _open(self, records: list[Any]) -> list[Envelope | None]:
        """Decode and open each record; what cannot be is dead-lettered (None in its place)."""
        decoded: list[Envelope | Exception] = []
        for record in records:
            try:
                decoded.append(Envelope.from_bytes(record.value))
            except EnvelopeError as error:
                decoded.append(error)
        self.personal.keys.preload(
            e.customer_id.hex for e in decoded if isinstance(e, Envelope) and e.sealed
        )
        opened: list[Envelope | None] = []
        for record, item in zip(records, decoded, strict=True):
            problem = item
            if isinstance(item, Envelope):
                try:
                    opened.append(self.personal.open_envelope(item))
                    continue
                except SealBroken as error:
                    problem = error
            send_to_dlq(self.dlq_producer, record, f"undecodable envelope: {problem}")
            opened.append(None)
        return opened

    def _one_by_one(self, records: list[Any], envelopes: list[Envelope | None]) -> None:
        """Isolate a failing message: retry each alone, dead-letter what keeps failing."""
        for record, envelope in zip(records, envelopes, strict=True):
            for attempt in range(1, self.attempts + 1):
                try:
                    with self.read_store.transaction() as tx:
                        if envelope is not None:
                            project(tx, self.bindings, [envelope], by_position=False)
                        self._store_offsets(tx, [record])
                    break
                except Exception as error:
                    if attempt == self.attempts:
                        send_to_dlq(self.dlq_producer, record, f"apply failed: {error!r}")
                        with self.read_store.transaction() as tx:
                            self._store_offsets(tx, [record])

    def _store_offsets(self, tx: Tx, records: list[Any]) -> None:
        nexts: dict[int, int] = {}
        for record in records:
            nexts[record.partition] = max(nexts.get(record.partition, 0), record.offset + 1)
        tx.executemany(
            "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (consumer_group, topic, partition) "
            "DO UPDATE SET next_offset = excluded.next_offset",
            [
                (self.group, self.topic, partition, offset)
                for partition, offset in sorted(nexts.items())
            ],
        )

    def run(self) -> None:
        """Consume until :meth:`stop` (SIGTERM): the batch in hand is finished, then we leave."""
        self.subscribe()
        try:
            while not self.stopping.is_set():
                self.poll_once()
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self.stopping.set()
