"""Projection consumers: ``customer.events`` → projectors, exactly-once in effect.

Each batch is applied in ONE read-store transaction together with the consumer's next offsets
(table ``consumer_offsets``); on (re)assignment the consumer seeks to the stored offsets. A
crash therefore loses nothing and applies nothing twice, whatever Kafka's own commits say.
Projectors are also idempotent on (customer, version), so rebuilds and redeliveries overlap
harmlessly.

A customer whose event a projector cannot apply, or whose next version is missing from the
topic, is parked for that projection inside the batch (see :mod:`projections.framework`);
the other customers commit. Every second the consumer re-drives the parked customers that are
due, from the event store (:mod:`consumers.redrive`). A message that cannot be decoded goes to
the DLQ (the customer's next event then shows the gap); one whose batch keeps failing for
another reason is retried alone, then dead-lettered and its customer parked, and the
partition moves on.

Kafka may lose what it delivered: on (re)assignment and every ``verify_interval`` the consumer
compares its stored offsets and their topic identity with the topic (:mod:`infra.kafka_topics`).
Offsets beyond a partition's end, a partition gone, another topic id or cluster id: it logs
``consumer.topic_lost`` (a warning), catches its read models up from the store and moves its
offsets to the topic's end (:func:`consumers.consumer_offsets.reset`) — never skips ahead,
never reads the new topic from its beginning out of order. At the same look, a member whose
positions stood still behind the topic's end for ``stall_seconds`` is replaced
(``consumer.fetch_stalled``, :mod:`consumers.fetch_watch`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError

from consumers.consumer_offsets import ensure_tables, losses, remember, reset, stored
from consumers.dead_letters import send_to_dlq
from consumers.fetch_watch import STALL_SECONDS, FetchWatch
from consumers.record_values import open_values
from consumers.redrive import Redriven, redrive
from consumers.store_feed import StoreFeed
from infra.envelope import Envelope
from infra.kafka_group import GroupConsumer
from infra.kafka_topics import TopicInspector, TopicState
from infra.logging import exception_text
from infra.parking import Parked
from infra.personal_data import PersonalData
from infra.read_tx import Tx
from infra.readstore import ReadStore
from infra.resilience import Supervisor, transient
from projections.framework import Binding, Projector, park, project

log = structlog.get_logger(__name__)
CALL_TIMEOUT_MS = 30_000  # kafka-python waits without bound for a coordinator unless told


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: ProjectionConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        """Nothing to do: offsets are already stored with the data."""

    def on_partitions_assigned(self, assigned: Any) -> None:
        try:
            self.owner.seek(list(assigned))
        except Exception as error:  # the database is away: seek before the next poll instead
            self.owner.unsought = list(assigned)
            log.warning("consumer.seek_deferred", group=self.owner.group, error=repr(error))


class ProjectionConsumer:
    """One consumer-group member feeding ``projectors`` from ``topic``."""

    def __init__(
        self,
        consumer: KafkaConsumer | GroupConsumer,
        dlq_producer: KafkaProducer,
        *,
        topic: str,
        group: str,
        read_store: ReadStore,
        projectors: Sequence[Projector],
        personal: PersonalData,
        feed: StoreFeed | None = None,
        attempts: int = 3,
        redrive_interval: float = 1.0,
        inspector: TopicInspector | None = None,
        verify_interval: float = 5.0,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        """``personal`` opens the envelopes' sealed personal data through the key store;
        ``feed`` (the event store) is where parked customers are re-driven from and read
        models caught up from when the broker lost the topic; ``inspector`` looks at the topic
        (None: only end offsets are compared, at assignment); ``stall_seconds``: how long a
        partition behind the topic's end may stand still before the consumer is replaced."""
        self.consumer = consumer
        self.dlq_producer = dlq_producer
        self.topic = topic
        self.group = group
        self.read_store = read_store
        self.bindings = [Binding.live(p) for p in projectors]
        self.personal = personal
        self.feed = feed
        self.attempts = attempts
        self.redrive_interval = redrive_interval
        self.inspector = inspector
        self.verify_interval = verify_interval
        self.watch = FetchWatch(stall_seconds)
        self.stopping = threading.Event()
        self.applied = 0
        self._present: dict[int, int] = {}  # partition -> offset whose last record was found
        self._ends_seen: dict[int, int] = {}  # the end offsets it was found under
        self.unsought: list[TopicPartition] = []  # assigned while the database was away
        self._next_redrive = 0.0
        self._next_verify = 0.0
        ensure_tables(read_store)

    def subscribe(self) -> None:
        self.consumer.subscribe([self.topic], listener=_SeekToStoredOffsets(self))

    def seek(self, partitions: list[TopicPartition]) -> None:
        """Position every assigned partition at the offset stored with our read models, once
        those are known to count in the topic as it is (else reset from the store first)."""
        numbers = [p.partition for p in partitions]
        try:
            self._check(numbers)
        except Exception as error:  # never fail the rebalance: the periodic check looks again
            log.error("consumer.verify_failed", group=self.group, exception=exception_text(error))
        with self.read_store.transaction() as tx:
            offsets = stored(tx, self.group, self.topic).offsets
        for partition in partitions:
            if partition.partition in offsets:
                self.consumer.seek(partition, offsets[partition.partition])
            else:
                self.consumer.seek_to_beginning(partition)
        log.info("consumer.assigned", group=self.group, partitions=sorted(numbers))

    def _check(self, partitions: list[int]) -> None:
        """At assignment: reset ``partitions`` from the store if their stored offsets no
        longer count in the topic; else record which topic they count in."""
        if self.inspector is None:
            return
        state = self.inspector.state(self.topic)
        self._present.clear()
        with self.read_store.transaction() as tx:
            mine = stored(tx, self.group, self.topic)
        reasons = losses(mine, state, partitions, missing=self._missing)
        if reasons:
            self._reset(partitions, state, reasons)
        elif state.exists:
            with self.read_store.transaction() as tx:
                remember(tx, self.group, state, partitions)

    def verify(self) -> bool:
        """Compare the assigned partitions' positions and recorded topic identity with the
        topic now; reset from the store if the broker lost it. Returns whether it did. A member
        that makes no progress behind the topic's end is replaced (:meth:`_watch`)."""
        if self.inspector is None:
            return False
        assigned = sorted(self.consumer.assignment(), key=lambda tp: tp.partition)
        state = self.inspector.state(self.topic)
        with self.read_store.transaction() as tx:
            mine = stored(tx, self.group, self.topic)
        if not assigned:  # joining (or more members than partitions): GroupConsumer's watch
            return False
        mine_now = {tp.partition for tp in assigned}
        others = {  # another member may hold them: the group's offsets must move then
            p: mine.offsets.get(p, 0) for p in range(state.partitions) if p not in mine_now
        }
        if state.end_offsets != self._ends_seen:  # what was found may have gone since
            self._present.clear()
            self._ends_seen = state.end_offsets
        positions = {
            tp.partition: int(self.consumer.position(tp, timeout_ms=CALL_TIMEOUT_MS))
            for tp in assigned
        }
        reasons = losses(mine, state, positions, positions, missing=self._missing)
        if not reasons:
            self._watch({**others, **positions}, state, mine_now)
            return False
        self._reset(list(positions), state, reasons)
        for tp in assigned:
            self.consumer.seek(tp, state.end_offsets.get(tp.partition, 0))
        return True

    def _watch(self, positions: dict[int, int], state: TopicState, assigned: set[int]) -> None:
        """Replace the Kafka consumer (a :class:`GroupConsumer`; else re-seek its partitions)
        if ``positions`` stood still behind the topic's end (:mod:`consumers.fetch_watch`)."""
        stall = self.watch.look(positions, state.end_offsets, time.monotonic())
        if stall is None:
            return
        reason = stall.reason(assigned)
        log.warning(
            "consumer.fetch_stalled",
            group=self.group,
            topic=self.topic,
            reason=reason,
            partitions=stall.to_dict(),
        )
        self.watch.restart()
        if isinstance(self.consumer, GroupConsumer):
            self.consumer.rebuild(reason)
            return
        for tp in self.consumer.assignment():
            self.consumer.seek(tp, positions[tp.partition])

    def _out_of_range(self, error: OffsetOutOfRangeError) -> None:
        """The broker has no records where we are: whatever it lost or let expire is caught up
        from the store, and the partitions follow the topic from its end."""
        assigned = sorted(self.consumer.assignment(), key=lambda tp: tp.partition)
        state = self._look(assigned)
        self._reset([tp.partition for tp in assigned], state, [f"offsets out of range: {error}"])
        for tp in assigned:
            self.consumer.seek(tp, state.end_offsets.get(tp.partition, 0))

    def _missing(self, offsets: dict[int, int]) -> set[int]:
        """Of ``offsets`` beyond the reported ends, those whose last record is gone. One found
        is not looked for again at the same offset (tansu reports ends by batch: an idle
        consumer is often beyond them) while the topic's end offsets stay the same."""
        assert self.inspector is not None
        unsure = {p: o for p, o in offsets.items() if self._present.get(p) != o}
        gone = self.inspector.missing(self.topic, unsure) if unsure else set()
        self._present.update({p: o for p, o in unsure.items() if p not in gone})
        return gone

    def _look(self, partitions: list[TopicPartition]) -> TopicState:
        """The topic now: from the inspector, else only the assigned partitions' end offsets."""
        if self.inspector is not None:
            return self.inspector.state(self.topic)
        ends = self.consumer.end_offsets(partitions, timeout_ms=CALL_TIMEOUT_MS)
        return TopicState(self.topic, None, None, {tp.partition: o for tp, o in ends.items()})

    def _reset(self, partitions: list[int], state: TopicState, reasons: list[str]) -> None:
        """The broker lost what our offsets count in: catch up from the store, move on."""
        log.warning(
            "consumer.topic_lost",
            group=self.group,
            reasons=reasons,
            partitions=partitions,
            found=state.to_dict(),
        )
        if self.feed is None:
            raise RuntimeError(f"{self.group}: no event store to catch up from")
        self._present.clear()
        projectors = [b.projector for b in self.bindings]
        applied = reset(
            self.feed,
            self.read_store,
            projectors,
            group=self.group,
            state=state,
            partitions=partitions,
        )
        log.warning(
            "consumer.caught_up_from_store",
            group=self.group,
            topic=self.topic,
            events_read=applied,
            offsets={str(p): state.end_offsets.get(p) for p in partitions},
        )

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Apply one polled batch; returns the number of records handled. A transient error
        (the database is away, :mod:`infra.resilience`) propagates, and the same records are
        polled again next time."""
        if self.unsought:
            assigned = self.consumer.assignment()
            self.seek([p for p in self.unsought if p in assigned])
            self.unsought = []
        try:
            batches = self.consumer.poll(timeout_ms=timeout_ms)
        except OffsetOutOfRangeError as error:  # below the log start, or beyond the end
            self._out_of_range(error)
            return 0
        except NoOffsetForPartitionError:
            if not self.unsought:
                raise
            return 0  # assigned while the database was away: the next poll seeks first
        records = [record for batch in batches.values() for record in batch]
        if not records:
            return 0
        try:
            self._apply(records)
        except Exception:
            for partition, batch in batches.items():
                self.consumer.seek(partition, batch[0].offset)
            raise
        self.applied += len(records)
        return len(records)

    def _apply(self, records: list[Any]) -> None:
        envelopes = self._open(records)
        try:
            with self.read_store.transaction() as tx:
                project(
                    tx, self.bindings, [e for e in envelopes if e is not None], by_position=False
                )
                self._store_offsets(tx, records)
        except Exception as error:
            if transient(error):
                raise
            log.error(
                "consumer.batch_failed",
                group=self.group,
                records=len(records),
                exception=exception_text(error),
            )
            self._one_by_one(records, envelopes)

    def _open(self, records: list[Any]) -> list[Envelope | None]:
        """Decode and open each record; what cannot be is dead-lettered (None in its place)."""
        opened: list[Envelope | None] = []
        items = open_values([record.value for record in records], self.personal)
        for record, item in zip(records, items, strict=True):
            if isinstance(item, Envelope):
                opened.append(item)
                continue
            send_to_dlq(self.dlq_producer, record, f"undecodable envelope: {item}")
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
                    if transient(error):  # not the message's fault: never dead-lettered
                        raise
                    if attempt == self.attempts:
                        reason = f"apply failed: {error!r}"
                        send_to_dlq(self.dlq_producer, record, reason)
                        with self.read_store.transaction() as tx:
                            if envelope is not None:
                                self._park(tx, envelope, reason)
                            self._store_offsets(tx, [record])

    def _park(self, tx: Tx, envelope: Envelope, reason: str) -> None:
        """Hold the customer of a dead-lettered envelope back in every projection we feed,
        so that a re-drive from the store catches it up (and nothing applies out of order)."""
        parked = Parked(envelope.customer_key, envelope.version, envelope.position, reason)
        for binding in self.bindings:
            park(tx.with_tables(binding.tables), binding.projector, [parked])

    def redrive_due(self) -> list[Redriven]:
        """Retry the parked customers whose backoff has passed, from the event store."""
        if self.feed is None:
            return []
        projectors = [b.projector for b in self.bindings]
        return redrive(self.feed, self.read_store, projectors, due_only=True)

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
        """Consume until :meth:`stop` (SIGTERM): the batch in hand is finished, then we leave.
        An outage of the database or the broker is waited out
        (:class:`~infra.resilience.Supervisor`)."""
        self.subscribe()
        self._next_verify = time.monotonic() + self.verify_interval
        try:
            Supervisor(f"consumer {self.group}", self.stopping).run(self._step)
        finally:
            self.consumer.close()

    def _step(self) -> None:
        """Apply a polled batch; re-drive the parked customers and look at the topic when due
        (:meth:`verify`)."""
        self.poll_once()
        if time.monotonic() >= self._next_redrive:
            self._next_redrive = time.monotonic() + self.redrive_interval
            self.redrive_due()
        if time.monotonic() >= self._next_verify:
            self._next_verify = time.monotonic() + self.verify_interval
            self.verify()

    def stop(self) -> None:
        self.stopping.set()
