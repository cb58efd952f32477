"""The outbox relay: the store's notification log → ``customer.events`` on Kafka.

It follows the log from its checkpoint (woken by PostgreSQL LISTEN/NOTIFY, with catch-up reads
and a polling fallback), publishes each envelope keyed by customer id through an idempotent
``acks=all`` producer with two batches in flight, and moves its checkpoint only after the
broker acknowledged the batch and all before it. A crash replays at most two batches:
at-least-once, per-customer order preserved (one key, one partition, ordered sends).
Consumers are idempotent on (customer, version).

No single envelope stops it. One refused as too large (above
``CLIENTELE_KAFKA_MAX_MESSAGE_BYTES``, by the producer or the broker) parks its customer in
``relay_parked`` (position, version, size, reason), written in the same transaction as the
checkpoint that passes it, at its lowest version held (a refusal of an earlier batch read
later moves it back, never forward). That customer's later events wait behind it (never
published out of order), its earlier ones do not (a republish after a topic loss sends them
again); every other customer flows. Parked customers are re-driven at start, when due
(backoff 1 s doubling to 5 min) and on ``clientele relay redrive``: their events up to the
checkpoint are published in order, and if all went through the customer flows again.
Re-drives run in the relay's own loop between batches, so it stays the topic's only
publisher. (If a broker refuses a record while later ones of the same customer were in
flight, those are published again after it on re-drive; consumers heal such a gap from the
store.)

The store is the source of truth, the topic a transport that may lose what it acknowledged.
With its checkpoint the relay records the topic's identity and acknowledged end offsets
(:mod:`consumers.relay_topic`); at start, every ``verify_interval`` and after any failed batch
it looks at the topic (:meth:`Relay.verify`). A topic that lost what was acknowledged (missing,
recreated, fewer partitions, offsets gone backwards, another cluster) is logged as
``relay.topic_lost``, recreated with the configured partition count if the broker brought it
back with another one, and republished from the store's beginning with a fresh producer.
Consumers notice the same loss themselves and catch up from the store.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, RecordListTooLargeError
from kafka.producer.future import FutureRecordMetadata

from consumers.relay_tables import (
    CHANNEL,
    DEFAULT_NAME,
    checkpoint,
    ensure_relay_tables,
    parking_lot,
)
from consumers.relay_topic import Marks, TopicGuard, losses, read_marks
from consumers.store_feed import StoreFeed
from infra.kafka import PartitionCountMismatch
from infra.kafka_producer import RenewingProducer
from infra.kafka_topics import Identity
from infra.logging import exception_text
from infra.notifications import Listener
from infra.parking import Parked, describe
from infra.published import Published
from infra.read_tx import Tx
from infra.readstore import ReadStore
from infra.resilience import Supervisor

log = structlog.get_logger(__name__)
TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)
ACK_TIMEOUT = 30.0  # seconds an ack may take; then the producer is renewed and the batch retried
Sent = list[tuple[Published, int, FutureRecordMetadata]]  # event, value bytes, ack


class Relay:
    """Publishes customer envelopes from ``feed`` to ``topic``; checkpoint in ``checkpoints``."""

    def __init__(
        self,
        feed: StoreFeed,
        producer: KafkaProducer,
        topic: str,
        checkpoints: ReadStore,
        *,
        name: str = DEFAULT_NAME,
        batch_size: int = 2000,
        poll_interval: float = 1.0,
        redrive_interval: float = 1.0,
        guard: TopicGuard | None = None,
        verify_interval: float = 5.0,
    ) -> None:
        """``guard``: how to look at and repair the topic (None: the relay never looks)."""
        self.feed = feed
        self.producer = producer
        self.topic = topic
        self.checkpoints = checkpoints
        self.name = name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.redrive_interval = redrive_interval
        self.guard = guard
        self.verify_interval = verify_interval
        self.lot = parking_lot(name)
        self.stopping = threading.Event()
        self._acknowledged: int | None = None
        self._marks: Marks | None = None
        self._held: dict[str, int] | None = None
        channel = feed.store.backend.notify_channel  # None (SQLite): polling only
        self._listener = (
            None if channel is None else Listener(feed.store.database_url, [channel, CHANNEL])
        )
        self._redrive_at: float | None = None  # None: all parked customers, now
        self._verify_at = 0.0  # when to look at the topic next (verify)
        ensure_relay_tables(checkpoints)

    def position(self) -> int:
        return checkpoint(self.checkpoints, self.name)

    def lag(self) -> int:
        """Customer events recorded but not yet acknowledged by the broker."""
        return self.feed.pending(self.position(), customers_only=True)

    def held(self) -> dict[str, int]:
        """Customers parked now, each with the version it is parked at: that event and the
        later ones wait; the earlier ones (published before, or after a topic loss) flow."""
        if self._held is None:
            with self.checkpoints.transaction() as tx:
                listing = self.lot.listing(tx, limit=1 << 62)
            self._held = {p.customer_id: p.version for p in listing}
        return self._held

    def catch_up(self, *, stop: threading.Event | None = None) -> int:
        """Publish everything recorded so far, two batches in flight: batch N is sent before
        N-1's acks are awaited, N+1 read (by a reader thread, so the store's answer is awaited
        while N is sent) while N's come in; each checkpoint waits for the acks of its batch and
        all before. ``stop``: leave after the batch in hand once set (:meth:`run` passes its
        own; a caller's catch-up goes on to the head after a stop)."""
        total = 0
        if self._acknowledged is None:  # we are the only writer of our checkpoint
            self._acknowledged = self.position()
        previous: tuple[Sent, dict[str, Parked], int] | None = None  # sent, unconfirmed
        with ThreadPoolExecutor(1, thread_name_prefix="relay-read") as reader:
            envelopes = self.feed.read_published(self._acknowledged, self.batch_size)
            while envelopes and not (stop is not None and stop.is_set()):
                reached = envelopes[-1].position
                upcoming = (
                    reader.submit(self.feed.read_published, reached, self.batch_size)
                    if len(envelopes) == self.batch_size
                    else None
                )
                sent, parked = self._send(envelopes, self.held())
                if previous is not None:
                    self._confirm(*previous)
                previous = (sent, parked, reached)
                envelopes = [] if upcoming is None else upcoming.result()
                total += len(sent)
            if previous is not None:  # the last batch's acks
                self._confirm(*previous)
        return total

    def _send(
        self, envelopes: list[Published], held: dict[str, int]
    ) -> tuple[Sent, dict[str, Parked]]:
        """Send in order, skipping the events ``held`` back (a customer's, from the version it
        is parked at); one refused as too large is held from its version on."""
        sent: Sent = []
        parked: dict[str, Parked] = {}
        producer, topic = self.producer, self.topic
        if isinstance(producer, RenewingProducer):  # renewed if broken: once per batch
            producer = producer.current()
        for e in envelopes:
            key = e.customer_key
            if e.version >= held.get(key, e.version + 1):
                continue  # waits behind its parked event
            value = e.value
            try:
                future = producer.send(
                    topic, key=key.encode(), value=value, headers=e.kafka_headers()
                )
            except TOO_LARGE as error:
                parked[key] = Parked(key, e.version, e.position, describe(error), len(value))
                held[key] = e.version
                continue
            sent.append((e, len(value), future))
        return sent, parked

    def _acks(self, sent: Sent, parked: dict[str, Parked], held: dict[str, int]) -> None:
        """Wait for the broker's acks of ``sent``; a record it refused as too large parks
        its customer (at its earliest refused version); any other failure raises (an ack not
        in within :data:`ACK_TIMEOUT` renews the producer first: the retry sends through a
        new one)."""
        firsts: dict[int, int] = {}  # partition -> first offset acknowledged in this batch
        for envelope, size, future in sent:
            try:
                metadata = future.get(timeout=ACK_TIMEOUT)  # no flush: the next batch flies on
                first = firsts.get(metadata.partition, metadata.offset)
                firsts[metadata.partition] = min(first, metadata.offset)
            except KafkaTimeoutError:
                if isinstance(self.producer, RenewingProducer):
                    self.producer.renew(f"ack not received within {ACK_TIMEOUT} s")
                raise
            except TOO_LARGE as error:
                key = envelope.customer_key
                if key not in parked or parked[key].version > envelope.version:
                    reason = f"refused by the broker: {describe(error)}"
                    parked[key] = Parked(key, envelope.version, envelope.position, reason, size)
                held[key] = min(held.get(key, envelope.version), envelope.version)
        for partition, offset in firsts.items():
            # a lower bound of the end: some brokers (tansu) report a partition's end as its
            # last batch's first offset + 1, and a batch is kept or lost whole
            self.marks().acknowledged(partition, offset)

    def _confirm(self, sent: Sent, parked: dict[str, Parked], reached: int) -> None:
        """Wait for the acks of ``sent``, then record ``parked`` and checkpoint ``reached``
        (not a park behind a lower version of the customer held meanwhile: an earlier batch's)."""
        held = self.held()
        self._acks(sent, parked, held)
        parked = {key: p for key, p in parked.items() if held.get(key, p.version) >= p.version}
        with self.checkpoints.transaction() as tx:
            self.lot.park(tx, parked.values())
            self._checkpoint(tx, reached)
        self._acknowledged = reached
        for item in parked.values():
            log.error("relay.customer_parked", relay=self.name, **item.to_dict())

    def _checkpoint(self, tx: Tx, position: int) -> None:
        """Record ``position`` and what the broker acknowledged (one transaction)."""
        tx.execute(
            "INSERT INTO relay_checkpoints (name, position, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
            "updated_at = excluded.updated_at",
            (self.name, position, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        )
        self.marks().write(tx, self.name)

    def marks(self) -> Marks:
        """What the relay recorded of its topic (read once, then kept up to date)."""
        if self._marks is None:
            recorded = read_marks(self.checkpoints, self.name)
            same = recorded is not None and recorded.topic == self.topic
            self._marks = recorded if recorded is not None and same else Marks(self.topic)
        return self._marks

    def verify(self) -> bool:
        """Look at the topic; if it lost what was acknowledged, repair it and republish from
        the store's beginning. Returns whether it did. Raises
        :class:`~infra.kafka.PartitionCountMismatch` for a topic with another partition count
        that lost nothing (a configuration error)."""
        guard = self.guard
        if guard is None:
            return False
        state = guard.inspector.state(self.topic)
        recorded = read_marks(self.checkpoints, self.name)
        reasons = losses(recorded, state)
        if reasons:
            log.warning(
                "relay.topic_lost",
                relay=self.name,
                reasons=reasons,
                recorded=recorded.to_dict() if recorded else None,
                found=state.to_dict(),
                expected_partitions=guard.partitions,
            )
        if not state.exists or (reasons and state.partitions != guard.partitions):
            state = guard.inspector.recreate(self.topic, guard.partitions, guard.limits)
        elif state.partitions != guard.partitions:
            raise PartitionCountMismatch({self.topic: state.partitions}, guard.partitions)
        identity = Identity(state.cluster_id, state.topic_id)
        if not reasons:
            marks = self.marks()
            if marks.identity != identity:  # first look (or the broker began to tell)
                marks.identity = identity
                for partition, end in state.end_offsets.items():
                    marks.end_offsets[partition] = max(marks.end_offsets.get(partition, 0), end)
                position = self.position()
                with self.checkpoints.transaction() as tx:
                    self._checkpoint(tx, position)
            return False
        old, self.producer = self.producer, guard.new_producer()
        try:
            old.close(timeout=1)
        except Exception as error:  # its unacknowledged records are republished anyway
            log.debug("relay.old_producer_close_failed", exception=exception_text(error))
        self._marks = Marks(self.topic, identity, dict(state.end_offsets))
        with self.checkpoints.transaction() as tx:
            self._checkpoint(tx, 0)
        self._acknowledged = 0
        guard.repair_others()
        log.warning(
            "relay.republishing",
            relay=self.name,
            topic=self.topic,
            from_position=0,
            events=self.lag(),
        )
        return True

    def redrive(self, *, due_only: bool = True, customer_id: str | None = None) -> list[Parked]:
        """Publish parked customers' events up to the checkpoint, in order: those due for a
        retry, or all (or one). Returns the ones still parked."""
        if self._acknowledged is None:
            self._acknowledged = self.position()
        with self.checkpoints.transaction() as tx:
            due = self.lot.listing(
                tx, due_at=datetime.now(UTC) if due_only else None, customer_id=customer_id
            )
        return [p for p in (self._redrive_one(row) for row in due) if p is not None]

    def _redrive_one(self, row: Parked) -> Parked | None:
        customer, until = row.customer_id, self._acknowledged
        others = {key: version for key, version in self.held().items() if key != customer}
        after, published = row.version - 1, 0
        while True:
            envelopes = self.feed.customer_published(
                UUID(customer), after, self.batch_size, until=until
            )
            sent, parked = self._send(envelopes, others)
            self._acks(sent, parked, others)
            if customer in parked:
                return self._still_parked(row, parked[customer], published)
            published += len(sent)
            if len(envelopes) < self.batch_size:
                break
            after = envelopes[-1].version
        with self.checkpoints.transaction() as tx:
            self.lot.release(tx, customer)
            self.marks().write(tx, self.name)
        self.held().pop(customer, None)
        log.info("relay.redriven", relay=self.name, customer_id=customer, published=published)
        return None

    def _still_parked(self, row: Parked, refused: Parked, published: int) -> Parked:
        again = replace(refused, attempts=row.attempts + 1, parked_at=row.parked_at)
        with self.checkpoints.transaction() as tx:
            self.lot.release(tx, row.customer_id)  # what came before ``refused`` went out
            self.lot.park(tx, [again])
            again = self.lot.listing(tx, customer_id=row.customer_id, limit=1)[0]
        log.warning("relay.redrive_failed", relay=self.name, published=published, **again.to_dict())
        return again

    def run(self) -> None:
        """Publish until :meth:`stop`; errors back off and retry, never skip, and an outage
        of the store or the broker is waited out (:class:`~infra.resilience.Supervisor`); a
        topic with another partition count than configured ends it (a configuration error).
        Parked customers are all retried at start (the limit may have risen), then when due."""
        self._redrive_at = None
        self._verify_at = 0.0
        try:
            Supervisor("relay", self.stopping, recover=self._forget).run(self._step)
        finally:
            self._forget()

    def _step(self) -> None:
        """Look at the topic when due (:meth:`verify`), publish what is new, re-drive the
        parked customers that are due, then wait for a notification (or the poll interval)."""
        if self._listener is not None:
            self._listener.open()  # before reading: a write meanwhile wakes the wait
        if time.monotonic() >= self._verify_at:
            self._verify_at = time.monotonic() + self.verify_interval
            self.verify()
        published = self.catch_up(stop=self.stopping)
        if published:
            log.info("relay.published", count=published, position=self._acknowledged)
        if self._redrive_at is None or time.monotonic() >= self._redrive_at:
            self._held = None  # re-read: rows may have been removed by hand
            self.redrive(due_only=self._redrive_at is not None)
            self._redrive_at = time.monotonic() + self.redrive_interval
        timeout = (
            min(self.poll_interval, self.redrive_interval) if self._held else self.poll_interval
        )
        if self._listener is None:
            self.stopping.wait(timeout)
        else:
            self._listener.wait(timeout)

    def _forget(self) -> None:
        """After a failure: close the listening connection; next time look at the topic first
        (the broker may have lost it), re-read the checkpoint, the marks and the parked ones."""
        self._acknowledged = None
        self._marks = None
        self._held = None
        self._verify_at = 0.0
        if self._listener is not None:
            self._listener.close()

    def stop(self) -> None:
        self.stopping.set()
