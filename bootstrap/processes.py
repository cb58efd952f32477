"""Every long-running process, built in one place for embedded and full mode alike.

A process is a :class:`Process`: an optional *foreground* loop that runs in the calling
thread until stopped (the relay, a Kafka consumer, the command ingest) and *background*
workers that run in threads beside it (the embedded runner, the membership publisher,
periodic tasks). Each builder is a context manager that opens what the process needs and
closes it on exit; the CLI command that runs it only says what it does and waits::

    with build() as services, processes.relay(services) as process:
        process.run()  # until process.stop() (SIGTERM)

A new process (a policy runner, a campaign dispatcher) is one builder here and one command in
``api.cli``. The API's own background work (embedded runner, segment refresh, seals, metrics)
is :func:`api_background`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol

from prometheus_client import REGISTRY

from bootstrap.services import Services
from consumers.campaign_dispatch import CampaignDispatcher
from consumers.campaign_schedule import scheduled_launches
from consumers.churn_fit import ModelFitter
from consumers.embedded import EmbeddedRunner
from consumers.ingest import CommandIngest
from consumers.kafka_projection import ProjectionConsumer
from consumers.lifecycle_policy import LifecycleRunner
from consumers.loyalty_policy import LoyaltyRunner
from consumers.migrate import migrate
from consumers.periodic import Every
from consumers.relay import DEFAULT_NAME, Relay
from consumers.relay_topic import TopicGuard
from consumers.segment_publisher import MembershipPublisher
from consumers.segment_refresh import refresh_segments
from consumers.status import DEFAULT_GROUP, GROUP_PREFIX, pipeline_report
from infra import kafka, resilience
from infra.kafka_group import GroupConsumer, group_consumer
from infra.kafka_topics import TopicInspector
from infra.metrics import register_projection_collector
from infra.notifications import Listener, Wakeup
from infra.runtime import settle_heap
from infra.tamper_evidence import seals
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
    producer = kafka.producer(bootstrap, limits, dlq=True)  # dead letters and memberships
    inspector = TopicInspector(bootstrap)
    try:
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
    finally:
        producer.close(timeout=10)
        inspector.close()


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
    producer = kafka.producer(bootstrap, limits, dlq=True)
    try:
        worker = CommandIngest(
            group_consumer(bootstrap, "clientele-ingest", limits),
            producer,
            services.commands,
            commands_topic=topics.commands,
            results_topic=topics.command_results,
            read_store=services.read_store,
        )
        yield Process(f"executing commands from {topics.commands}", worker)
    finally:
        producer.close(timeout=10)


def lifecycle_runner(services: Services) -> LifecycleRunner:
    """The lifecycle policy's process manager on ``services`` (sweeps and simulations by hand;
    :func:`policy_runner` runs it), its checkpoint beside the event store."""
    return LifecycleRunner(
        services.store,
        services.commands,
        services.policies,
        services.store_db,
        models=services.models,
        sweep_seconds=services.settings.policy_sweep_seconds,
    )


def model_fitter(services: Services) -> ModelFitter:
    """Fits the churn model on the analytics read model and records it in the store."""
    wake = services.runner.wake if services.runner is not None else None
    return ModelFitter(services.read_store, services.models, on_commit=wake)


def loyalty_runner(services: Services) -> LoyaltyRunner:
    """The loyalty policy's process manager on ``services`` (docs/adr/0010), alike."""
    return LoyaltyRunner(
        services.store,
        services.commands,
        services.policies,
        services.store_db,
        sweep_seconds=services.settings.policy_sweep_seconds,
    )


def policy_runners(services: Services) -> list[LifecycleRunner]:
    """Every policy's process manager, in the order sweeps run them."""
    return [lifecycle_runner(services), loyalty_runner(services)]


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


def policy_parts(services: Services) -> tuple[str, list[LifecycleRunner], list[Worker]]:
    """(what they do, each policy's process manager, the churn model's periodic fit) of the
    policy runner: each runner reacts to the events it follows in the store's log and sweeps
    as of now every ``CLIENTELE_POLICY_SWEEP_SECONDS`` (docs/adr/0008, 0010, 0011); the model
    is fitted every ``CLIENTELE_MODEL_FIT_SECONDS`` (0: never; docs/adr/0009)."""
    runners = policy_runners(services)
    deciding = "; ".join(f"{r.decides} from position {r.position()}" for r in runners)
    every = services.settings.model_fit_seconds
    beside: list[Worker] = (
        [Every(every, model_fitter(services).fit_now, "churn-model-fit")] if every else []
    )
    launching = services.settings.campaign_schedule_seconds  # scheduled campaigns (ADR 0014)
    beside += scheduled_launches(services.launcher, launching)
    channel = services.store.backend.notify_channel
    if channel is not None:  # PostgreSQL: woken by every write, whoever made it
        listener = Listener(services.settings.database_url, [channel])
        beside.append(Wakeup(listener, partial(wake_all, runners), "policy-wakeup"))
    summary = (
        f"deciding {deciding}; sweeping every {services.settings.policy_sweep_seconds:g} s"
        + (f"; fitting the churn model every {every:g} s" if every else "")
        + (f"; launching scheduled campaigns every {launching:g} s" if launching else "")
    )
    return summary, runners, beside


def wake_all(runners: list[LifecycleRunner], *_: object) -> None:
    """Wake every policy runner (after a write was noticed)."""
    for runner in runners:
        runner.wake()


@contextmanager
def policy_runner(services: Services) -> Iterator[Process]:
    """The policy runner (``clientele policies run``), alike in embedded and full mode
    (:func:`policy_parts`): the first policy's process manager in the foreground, the others
    and the model fit in threads of their own."""
    summary, (first, *others), beside = policy_parts(services)
    yield Process(summary, first, [*(InThread(r, f"policy-{r.name}") for r in others), *beside])


@contextmanager
def api_background(services: Services) -> Iterator[None]:
    """What ``serve`` runs beside the HTTP API: migrate, the embedded runner (a backlog is
    caught up in the background: the API answers at once), the periodic segment refresh and
    seals, the pipeline gauges for Prometheus and, when ``CLIENTELE_POLICIES_IN_SERVE`` (by
    default in embedded mode), the policy runner (:func:`policy_parts`), each part in a thread of its own."""
    settings = services.settings
    migrate(services)
    if services.runner is not None:
        services.runner.start()
    collector = register_projection_collector(lambda: pipeline_report(services))
    every = settings.segment_refresh_seconds
    refresher = Every(
        every,
        lambda: refresh_segments(services.segments, services.read_store, every=every),
        "segments-refresh",
    )
    sealer = Every(
        settings.seal_seconds,
        lambda: seals.seal(services.store_db, settings.seal_key.encode()),
        "audit-seal",
    )
    in_serve = (
        services.embedded if settings.policies_in_serve is None else settings.policies_in_serve
    )
    policies: list[Worker] = []
    if in_serve:
        _, runners, beside = policy_parts(services)
        policies = [*(InThread(r, f"policy-{r.name}") for r in runners), *beside]
        woken = services.commands.on_commit

        def wake(position: int) -> None:  # embedded: the API's own writes wake them
            if woken is not None:
                woken(position)
            wake_all(runners)

        services.commands.on_commit = wake
    refresher.start()
    sealer.start()
    started: list[Worker] = []
    try:
        for worker in policies:
            worker.start()
            started.append(worker)
        settle_heap()
        yield
    finally:
        for worker in started:
            worker.stop()
        sealer.stop()
        refresher.stop()
        REGISTRY.unregister(collector)
        if services.runner is not None:
            services.runner.stop()


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
