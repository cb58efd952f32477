"""Inbound commands: ``customer.commands`` → command service → ``customer.command-results``.

Each polled batch runs through the group-commit batch path. Every command is idempotent: it
carries its own ``idempotency_key`` or gets one from its Kafka coordinates, so a redelivery after
a crash replays the recorded outcome instead of acting twice. Offsets are committed to Kafka
only after the outcomes were acknowledged. Bytes that are not a UTF-8 JSON object (invalid or
other encodings, truncated, another JSON type, no value at all) go to the DLQ with the specific
reason; well-formed but invalid commands,
an unusable ``idempotency_key`` included, get a ``rejected`` result with the problem.
A registration is checked for duplicates as on every other edge (HTTP, batch, import): an
accepted result carries ``possible_duplicates`` (:class:`~projections.duplicate_candidates.
RegistrationCheck`, which also lists the pairs it found in the duplicates read model).

The broker may lose the topic (restarted without its data, topic recreated): the ingest compares
the topic id in its consumer's cluster metadata (refreshed every few seconds and after a
reconnect) before each batch; when it changed, the batch just polled is dropped (its positions
counted in the old instance, so records before them would be skipped) and the assigned
partitions are read again from the beginning of the new instance, logged as
``ingest.topic_recreated``. None may be assigned then, while the group rejoins after the broker
lost it: the group's committed offsets may still be positions in the old instance (committed
after a batch read before the change), so the rewind waits, and every partition of the first
assignment after it is read from the new instance's beginning (the batch polled with that
assignment is dropped; reading again is safe: recorded outcomes replay).
Coordinate keys carry the instance's epoch (:mod:`consumers.command_topic`), so a new command
never collides with an old one at the same coordinates. Each rebalance's assignment is logged
once with where reading starts and the committed offsets (:mod:`consumers.ingest_assignment`). A
member that holds fewer partitions than the topic has and never rebalances is replaced
(``ingest.fetch_stalled``, :mod:`consumers.ingest_watch`). A flush of the results is bounded (:meth:`infra.kafka_producer.RenewingProducer.flush`): one that
times out renews the producer, and the batch is polled and handled again after a backoff (its
commands replay their recorded outcomes; results may be published twice).
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
import structlog
from kafka import KafkaConsumer, KafkaProducer

from commands.duplicates import new_customers
from commands.messages import Command, parse_command
from commands.service import CommandService, Context, Outcome
from consumers.command_topic import TopicInstances
from consumers.dead_letters import send_to_dlq
from consumers.fetch_watch import STALL_SECONDS
from consumers.ingest_assignment import AssignmentLog
from consumers.ingest_watch import IngestWatch
from domain.errors import DomainError
from domain.text_policy import check_key
from infra.json_values import NotJsonObject, json_object
from infra.kafka_group import GroupConsumer
from infra.kafka_topics import TopicInspector
from infra.readstore import ReadStore
from infra.resilience import Supervisor
from projections.duplicate_candidates import RegistrationCheck

log = structlog.get_logger(__name__)


def _result(
    key: str, outcome: Outcome | DomainError, duplicates: list[dict[str, Any]] | None
) -> bytes:
    body: dict[str, Any] = {"idempotency_key": key}
    if isinstance(outcome, DomainError):
        body |= {"status": "rejected", "problem": outcome.to_dict()}
    else:
        body |= outcome.to_dict()
        if duplicates is not None:
            body["possible_duplicates"] = duplicates
    return orjson.dumps(body)


class UndecodableCommand(ValueError):
    """Record bytes that are not a JSON object: dead-lettered, no result."""


def read_command(value: bytes | None, coordinates: str) -> tuple[str, Command | DomainError]:
    """(idempotency key, the command or the :class:`DomainError` refusing it) of one record's
    value. The key is the command's own ``idempotency_key``, else the record's ``coordinates``
    (also when the key itself is refused). :class:`UndecodableCommand` if ``value`` is no JSON
    object, saying specifically why (:func:`infra.json_values.json_object`: no value, empty, a
    byte order mark, UTF-16/UTF-32, invalid UTF-8, truncated, other syntax or unpaired
    surrogate escapes, valid JSON of another type)."""
    try:
        doc = json_object(value, "a command")
    except NotJsonObject as error:
        raise UndecodableCommand(str(error)) from None
    key = coordinates
    try:
        if doc.get("idempotency_key") is not None:
            key = check_key("idempotency_key", doc["idempotency_key"])
        return key, parse_command({**doc, "idempotency_key": key})
    except DomainError as error:  # its result is keyed by the message's coordinates
        return key, error


class CommandIngest:
    """Consumes commands and publishes one result per command; with a ``read_store`` (the
    duplicates read model's), accepted results carry ``possible_duplicates`` (``[{customer_id,
    probability, evidence}]``, empty unless the command registered a new customer). With an
    ``inspector``, a member stuck behind the topic's end is replaced (module docstring)."""

    def __init__(
        self,
        consumer: KafkaConsumer | GroupConsumer,
        producer: KafkaProducer,
        service: CommandService,
        *,
        commands_topic: str,
        results_topic: str,
        read_store: ReadStore | None = None,
        inspector: TopicInspector | None = None,
        verify_interval: float = 5.0,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self.consumer = consumer
        self.watch = (
            None
            if inspector is None
            else IngestWatch(
                inspector, commands_topic, interval=verify_interval, stall_seconds=stall_seconds
            )
        )
        self.read_store = read_store
        self.producer = producer
        self.service = service
        self.commands_topic = commands_topic
        self.results_topic = results_topic
        self.stopping = threading.Event()
        self.instances = TopicInstances(read_store, commands_topic)
        self.topic_id: str | None = None  # the instance of the commands topic being read
        self.rewind_pending = False  # a new instance seen with nothing assigned: rewind later
        self.assignments = AssignmentLog(commands_topic)  # logs each rebalance's assignment

    def poll_once(self, timeout_ms: int = 500) -> int:
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        self.assignments.polled(self.consumer, batches, self._metadata_topic_id())
        if self._recreated() or self._rewound():
            return 0
        records = [record for batch in batches.values() for record in batch]
        if records:
            try:
                self._handle(records)
            except Exception:
                for partition, batch in batches.items():  # retry the same messages next time
                    self.consumer.seek(partition, batch[0].offset)
                if self.watch is not None:  # standing still while the store is away: no stall
                    self.watch.restart()
                raise
            self.consumer.commit()
        if self.watch is not None:
            self.watch.look(self.consumer)
        return len(records)

    def _metadata_topic_id(self) -> str | None:
        """The commands topic's id in the consumer's cluster metadata (None: not known)."""
        # kafka-python keeps the metadata in its (private) client; GroupConsumer forwards it
        cluster = getattr(getattr(self.consumer, "_client", None), "cluster", None)
        found = None if cluster is None else cluster.topic_id(self.commands_topic)
        return None if found is None else str(found)

    def _recreated(self) -> bool:
        """Whether the commands topic is another instance than the one read so far; if so,
        the assigned partitions are read again from the new instance's beginning."""
        found = self._metadata_topic_id()
        if found is None or found == self.topic_id:
            return False
        before, self.topic_id = self.topic_id, found
        if before is None:  # the first instance this process reads
            return False
        assigned = list(self.consumer.assignment())
        if assigned:
            self.consumer.seek_to_beginning(*assigned)
        self.rewind_pending = not assigned  # none while the group rejoins: see _rewound
        log.warning(
            "ingest.topic_recreated",
            topic=self.commands_topic,
            topic_id=found,
            previous_topic_id=before,
            epoch=self.instances.epoch(found),
            partitions=sorted(tp.partition for tp in assigned),
        )
        return True

    def _rewound(self) -> bool:
        """Whether a rewind waiting for an assignment (:meth:`_recreated` with none) was done
        now: every assigned partition is read again from the beginning (the batch just polled
        started at the group's committed offsets, which may count in the old instance)."""
        assigned = list(self.consumer.assignment()) if self.rewind_pending else []
        if not assigned:
            return False
        self.consumer.seek_to_beginning(*assigned)
        self.rewind_pending = False
        log.warning(
            "ingest.topic_rewound",
            topic=self.commands_topic,
            topic_id=self.topic_id,
            partitions=sorted(tp.partition for tp in assigned),
        )
        return True

    def _coordinates(self, record: Any) -> str:
        return self.instances.coordinates(self.topic_id, record.partition, record.offset)

    def _handle(self, records: list[Any]) -> None:
        parsed: list[tuple[Any, str, Command | DomainError]] = []
        for record in records:
            coordinates = self._coordinates(record)
            try:
                parsed.append((record, *read_command(record.value, coordinates)))
            except UndecodableCommand as error:
                send_to_dlq(self.producer, record, f"undecodable command: {error}")
        runnable = [c for _, _, c in parsed if isinstance(c, Command)]
        executed = self.service.execute_batch(runnable, self._context(records))
        found = self._duplicates(runnable, executed)
        outcomes = iter(enumerate(executed))
        sent = []
        for record, key, item in parsed:
            index, outcome = (-1, item) if isinstance(item, DomainError) else next(outcomes)
            correlation = dict(record.headers or []).get("correlation_id", key.encode())
            duplicates = None if found is None else found.get(index, [])
            sent.append(
                self.producer.send(
                    self.results_topic,
                    key=key.encode(),
                    value=_result(key, outcome, duplicates),
                    headers=[("correlation_id", correlation)],
                )
            )
        self.producer.flush()  # bounded: raises (retried) if the broker does not ack in time
        for future in sent:
            future.get(timeout=30)

    def _duplicates(
        self, commands: list[Command], outcomes: list[Outcome]
    ) -> dict[int, list[dict[str, Any]]] | None:
        """``{index: possible duplicates}`` of the commands that registered a new customer
        (None: no check configured)."""
        if self.read_store is None:
            return None
        new = new_customers(commands, outcomes, self.service.default_region)
        if not new:
            return {}
        check = RegistrationCheck(self.read_store)
        return dict(zip(new, check.check(list(new.values())), strict=True))

    def _context(self, records: list[Any]) -> Context:
        first = self._coordinates(records[0])
        return Context(actor="kafka:customer.commands", correlation_id=first, causation_id=first)

    def run(self) -> None:
        """Execute commands until :meth:`stop`; a failed batch is polled again after a
        backoff, and an outage of the store or the broker is waited out
        (:class:`~infra.resilience.Supervisor`)."""
        self.consumer.subscribe([self.commands_topic], listener=self.assignments)
        try:
            Supervisor("ingest", self.stopping).run(self.poll_once)
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self.stopping.set()
