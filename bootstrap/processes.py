"""Every long-running process, built in one place for embedded and full mode alike.

A process is a :class:`Process`: an optional *foreground* loop that runs in the calling
thread until stopped (the relay, a Kafka consumer, the command ingest) and *background*
workers that run in threads beside it (the embedded runner, the membership publisher,
periodic tasks). Each builder is a context manager that opens what the process needs and
closes it on exit; the CLI command that runs it only says what it does and waits::

    with build() as services, processes.relay(services) as process:
        process.run()  # until process.stop() (SIGTERM)

A new process (a policy runner, a campaign dispatcher) is one builder here and one command in
``api.cli``. The policy runner is built in :mod:`bootstrap.policy_processes`; the API's own
background work (embedded runner, segment refresh, seals, metrics) in
:mod:`bootstrap.api_background`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bootstrap.services import Services
from consumers.campaign_dispatch import CampaignDispatcher
from consumers.embedded import EmbeddedRunner
from consumers.ingest import CommandIngest
from consumers.kafka_projection import ProjectionConsumer
from consumers.migrate import migrate
from consumers.periodic import Every
from consumers.relay import Relay
from consumers.relay_tables import DEFAULT_NAME
from consumers.relay_topic import TopicGuard
from consumers.segment_publisher import MembershipPublisher
from consumers.status import DEFAULT_GROUP, GROUP_PREFIX
from infra import kafka, resilience
from infra.kafka_group import GroupConsumer, group_consumer
from infra.kafka_topics import TopicInspector
from infra.notifications import Listener, Wakeup
from infra.runtime import settle_heap
from infra.threads import ThreadWorker
from projections.registry import by_name
from projections.segments import SegmentsProjector

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer

    from projections.framework import Projector

MEMBERSHIP_EVERY_SECONDS = 1.0
# The log-order runner of `consume` is woken by the store's notifications; polling is the
# fallback (a notification lost while reconnecting).
LOG_ORDER_POLL_SECONDS = 2.0


class Loop(Protocol):
    """Runs in the calling thread until :meth:`stop`."""

    def run(self) -> None: ...
    def stop(self) -> None: ...


class Worker(Protocol):
    """Runs in a thread of its own between :meth:`start` and :meth:`stop`."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Process:
    """A long-running process. ``summary`` says what it does (printed at start)."""

    summary: str
    foreground: Loop | None = None
    background: list[Worker] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    def run(self) -> None:
        """Start the background workers, run the foreground loop, then wait until
        :meth:`stop`; the background workers are stopped in order on the way out."""
        started: list[Worker] = []
        try:
            for worker in self.background:
                worker.start()
                started.append(worker)
            settle_heap()
            if self.foreground is not None:
                self.foreground.run()
            while not self._stopping.wait(1.0):
                pass
        finally:
            for worker in started:
                worker.stop()

    def stop(self) -> None:
        """Ask the process to finish (safe from a signal handler)."""
        self._stopping.set()
        if self.foreground is not None:
            self.foreground.stop()


class NeedsKafka(RuntimeError):
    """A full-mode process was asked for while ``CLIENTELE_KAFKA_BOOTSTRAP`` is unset."""

    def __init__(self) -> None:
        super().__init__("set CLIENTELE_KAFKA_BOOTSTRAP (see `clientele dev up`)")


def _topics(services: Services) -> tuple[str, kafka.Topics]:
    """(bootstrap servers, topic names) of full mode; the topics are created if missing."""
    settings = services.settings
    if not settings.kafka_bootstrap:
        raise NeedsKafka
    topics = kafka.Topics(settings.kafka_topic_prefix)
    kafka.ensure_topics(
        settings.kafka_bootstrap, topics.all(), settings.kafka_partitions, settings.kafka_limits
    )
    resilience.mark(resilience.KAFKA, up=True)
    return settings.kafka_bootstrap, topics


@contextmanager
def relay(services: Services) -> Iterator[Process]:
    """The outbox relay: the store's log → ``customer.events`` (:mod:`consumers.relay`).

    It looks at its topic first: one the broker lost is recreated and republished from the
    store before the other topics are checked (those refuse another partition count)."""
    settings = services.settings
    if not settings.kafka_bootstrap:
        raise NeedsKafka
    bootstrap, limits = settings.kafka_bootstrap, settings.kafka_limits
    topics = kafka.Topics(settings.kafka_topic_prefix)
    inspector = TopicInspector(bootstrap)
    publisher = None
    try:
        guard = TopicGuard(
            inspector,
            settings.kafka_partitions,
            limits,
            lambda: kafka.producer(bootstrap, limits),
            others=tuple(t for t in topics.all() if t != topics.events),
        )
        publisher = relay_publisher(services, guard.new_producer(), topics.events, guard=guard)
        publisher.verify()
        _topics(services)
        yield Process(
            f"relaying from position {publisher.position()} to {topics.events}", publisher
        )
    finally:
        if publisher is not None:
            publisher.producer.close(timeout=10)
        inspector.close()


@contextmanager
def projection_consumer(services: Services, projection: str | None = None) -> Iterator[Process]:
    """Feed the read models (or only ``projection``, in its own consumer group): those of one
    customer at a time from ``customer.events``, the cross-customer ones (segments) from the
    store's log in global order, which Kafka's partitions do not keep; segment membership
    changes are published to ``customer.segment-membership``. Migrates first."""
    bootstrap, topics = _topics(services)
    limits = services.settings.kafka_limits
    migrate(services)
    projectors = [by_name(projection)] if projection else services.projectors
    from_topic = [p for p in projectors if not p.log_order]
    from_log = [p for p in projectors if p.log_order]
    group = f"{GROUP_PREFIX}{projection}" if projection else DEFAULT_GROUP
    with _producer_and_inspector(bootstrap, limits) as (producer, inspector):
        worker = None
        if from_topic:
            # out of range is the broker having lost records: caught up from the store
            consumer = group_consumer(bootstrap, group, limits, auto_offset_reset="none")
            worker = projection_worker(
                services,
                consumer,
                producer,
                topic=topics.events,
                group=group,
                projectors=from_topic,
                inspector=inspector,
            )
        background: list[Worker] = []
        if from_log:  # the runner retries their parked customers from the store too
            runner = EmbeddedRunner(
                services.feed, services.read_store, from_log, poll_interval=LOG_ORDER_POLL_SECONDS
            )
            background.append(runner)
            channel = services.store.backend.notify_channel
            if channel is not None:
                listener = Listener(services.settings.database_url, [channel])
                background.append(Wakeup(listener, runner.wake, "log-order-wakeup"))
        if any(p.name == SegmentsProjector.name for p in from_log):
            background.append(
                membership_publisher(
                    services, producer, topics.segment_membership, inspector=inspector
                )
            )
        yield Process(
            f"consuming {topics.events} as {group} into "
            f"{', '.join(p.name for p in from_topic)}; following the store's log into "
            f"{', '.join(p.name for p in from_log)}",
            worker,
            background,
        )


def relay_publisher(
    services: Services,
    producer: KafkaProducer,
    topic: str,
    name: str = DEFAULT_NAME,
    *,
    guard: TopicGuard | None = None,
) -> Relay:
    """The relay's publisher: the store's log → ``topic``, its checkpoint (``name``), parked
    customers and record of the topic beside the event store; ``guard`` lets it notice and
    repair a topic the broker lost."""
    return Relay(services.feed, producer, topic, services.store_db, name=name, guard=guard)


def projection_worker(
    services: Services,
    consumer: KafkaConsumer | GroupConsumer,
    producer: KafkaProducer,
    *,
    topic: str,
    group: str,
    projectors: list[Projector],
    inspector: TopicInspector | None = None,
) -> ProjectionConsumer:
    """Feeds ``projectors`` from ``topic`` through ``consumer`` (dead letters and healing
    from the store included); offsets are kept with the read models under ``group``;
    ``inspector`` lets it notice that the broker lost the topic."""
    return ProjectionConsumer(
        consumer,
        producer,
        topic=topic,
        group=group,
        read_store=services.read_store,
        projectors=projectors,
        personal=services.store.personal,
        feed=services.feed,
        inspector=inspector,
    )


def membership_publisher(
    services: Services,
    producer: KafkaProducer,
    topic: str,
    *,
    inspector: TopicInspector | None = None,
) -> Every:
    """Publishes segment membership changes to ``topic`` every second (not started); with
    ``inspector`` it publishes them all again when the broker lost the topic."""
    outbox = MembershipPublisher(services.read_store, producer, topic, inspector=inspector)
    return Every(MEMBERSHIP_EVERY_SECONDS, outbox.publish_all, "segment-membership")


@contextmanager
def command_ingest(services: Services) -> Iterator[Process]:
    """Execute commands from ``customer.commands``; outcomes to ``customer.command-results``."""
    bootstrap, topics = _topics(services)
    limits = services.settings.kafka_limits
    with _producer_and_inspector(bootstrap, limits) as (producer, inspector):
        worker = CommandIngest(
            group_consumer(bootstrap, "clientele-ingest", limits),
            producer,
            services.commands,
            commands_topic=topics.commands,
            results_topic=topics.command_results,
            read_store=services.read_store,
            inspector=inspector,
        )
        yield Process(f"executing commands from {topics.commands}", worker)


@contextmanager
def _producer_and_inspector(
    bootstrap: str, limits: kafka.MessageLimits
) -> Iterator[tuple[KafkaProducer, TopicInspector]]:
    """A producer (dead letters included) and a topic inspector, both closed afterwards (the
    producer too when the inspector cannot be made)."""
    producer = kafka.producer(bootstrap, limits, dlq=True)
    try:
        inspector = TopicInspector(bootstrap)
        try:
            yield producer, inspector
        finally:
            inspector.close()
    finally:
        producer.close(timeout=10)


class InThread(ThreadWorker):
    """A :class:`Loop` run as a :class:`Worker`: in a thread of its own until stopped."""

    def __init__(self, loop: Loop, name: str) -> None:
        super().__init__(name)
        self.inner = loop

    def loop(self) -> None:
        self.inner.run()

    def stop(self, timeout: float = 30.0) -> None:
        self.inner.stop()
        super().stop(timeout)


@contextmanager
def campaign_dispatcher(services: Services) -> Iterator[CampaignDispatcher]:
    """Publishes launched campaigns to ``campaign.dispatch`` (:mod:`consumers.campaign_dispatch`);
    full mode only (:class:`NeedsKafka`)."""
    bootstrap, topics = _topics(services)
    producer = kafka.producer(bootstrap, services.settings.kafka_limits)
    try:
        yield CampaignDispatcher(
            services.campaigns, services.read_store, producer, topics.campaign_dispatch
        )
    finally:
        producer.close(10)
