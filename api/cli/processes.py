"""Full mode from the command line: local services, the relay, projection consumers."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import orjson
import typer
from rich.console import Console

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer

    from api.bootstrap import Services
    from consumers.periodic import Every
    from infra.local_services import KafkaBroker, PostgresCluster
    from infra.settings import Settings
    from projections.framework import Projector

dev_app = typer.Typer(
    help="Local PostgreSQL + Kafka-protocol broker for full mode (no Docker).", no_args_is_help=True
)
console = Console(stderr=True)
DEV_DIR = Path("var/dev")  # its settings file is infra.settings.DEV_SETTINGS_FILE


def _state_file(root: Path) -> Path:
    return root / "services.json"


def _settings_file(root: Path) -> Path:
    return root / "clientele.env"


def _services(root: Path) -> tuple[PostgresCluster, KafkaBroker] | None:
    from infra.local_services import KafkaBroker, PostgresCluster

    state = _state_file(root)
    if not state.exists():
        return None
    ports = orjson.loads(state.read_bytes())
    return PostgresCluster(root / "postgres", ports["postgres"]), KafkaBroker(
        root / "broker", ports["broker"]
    )


def _exports(postgres: PostgresCluster, broker: KafkaBroker) -> str:
    return (
        f"export CLIENTELE_DATABASE_URL={postgres.url}\n"
        f"export CLIENTELE_KAFKA_BOOTSTRAP={broker.bootstrap}"
    )


def _write_settings(root: Path, postgres: PostgresCluster, broker: KafkaBroker) -> None:
    """The settings file every later command in this directory reads (environment wins)."""
    from infra.settings import DEV_SETTINGS_FILE

    path = _settings_file(root)
    path.write_text(
        "# Written by `clientele dev up`, removed by `clientele dev down`. Every clientele\n"
        "# command run here reads it; CLIENTELE_* environment variables take precedence.\n"
        f"CLIENTELE_DATABASE_URL={postgres.url}\n"
        f"CLIENTELE_KAFKA_BOOTSTRAP={broker.bootstrap}\n",
        encoding="utf-8",
    )
    if path == DEV_SETTINGS_FILE.resolve():
        console.print(f"settings written to ./{DEV_SETTINGS_FILE}: commands run here use them")
    else:
        console.print(
            f"settings written to {path}; use them with: export CLIENTELE_ENV_FILE={path}"
        )


@dev_app.command("up")
def dev_up(
    root: Annotated[Path, typer.Option(help="Where the services keep their data.")] = DEV_DIR,
    partitions: Annotated[int, typer.Option(min=1, max=256)] = 12,
) -> None:
    """Start PostgreSQL and the broker on 127.0.0.1, create topics, and write their settings
    to ./var/dev/clientele.env, which every later command run here reads (environment
    variables win); the same settings are printed as exports.

    Example: clientele dev up
    """
    from infra import kafka
    from infra.local_services import KafkaBroker, PostgresCluster, free_port
    from infra.settings import get_settings

    root = root.resolve()
    known = _services(root)
    postgres, broker = known or (
        PostgresCluster(root / "postgres", free_port()),
        KafkaBroker(root / "broker", free_port()),
    )
    root.mkdir(parents=True, exist_ok=True)
    _state_file(root).write_bytes(orjson.dumps({"postgres": postgres.port, "broker": broker.port}))
    console.print(f"starting PostgreSQL on {postgres.port} and the broker on {broker.port} …")
    postgres.start()
    broker.start()
    settings = get_settings()
    created = kafka.ensure_topics(
        broker.bootstrap,
        kafka.Topics(settings.kafka_topic_prefix).all(),
        partitions,
        settings.kafka_limits,
    )
    console.print(f"ready; topics created: {', '.join(created) or 'none (already there)'}")
    _write_settings(root, postgres, broker)
    typer.echo(_exports(postgres, broker))


@dev_app.command("down")
def dev_down(root: Annotated[Path, typer.Option()] = DEV_DIR) -> None:
    """Stop the local services (their data stays under --root) and remove their settings
    file: commands run here use the embedded SQLite store again.

    Example: clientele dev down
    """
    known = _services(root.resolve())
    if known is None:
        console.print("nothing to stop")
        return
    for service in known:
        service.stop()
    _settings_file(root.resolve()).unlink(missing_ok=True)
    console.print("stopped; settings file removed (commands here use the embedded store)")


@dev_app.command("status")
def dev_status(root: Annotated[Path, typer.Option()] = DEV_DIR) -> None:
    """Say whether the local services answer, and print the env vars to use them.

    Example: clientele dev status
    """
    known = _services(root.resolve())
    if known is None:
        console.print("not set up: run `clientele dev up`")
        raise typer.Exit(1)
    from infra.local_services import port_open

    postgres, broker = known
    up = {"postgres": port_open(postgres.port), "broker": port_open(broker.port)}
    for name, answering in up.items():
        console.print(f"{name}: {'up' if answering else 'down'}")
    typer.echo(_exports(postgres, broker))
    if not all(up.values()):
        raise typer.Exit(1)


def _full_mode() -> tuple[Settings, str]:
    from infra.settings import get_settings

    settings = get_settings()
    if not settings.kafka_bootstrap:
        console.print("[red]error:[/] set CLIENTELE_KAFKA_BOOTSTRAP (see `clientele dev up`)")
        raise typer.Exit(2)
    return settings, settings.kafka_bootstrap


def _until_sigterm(stop: object) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop())  # type: ignore[operator]


relay_app = typer.Typer()  # help: the callback's docstring


@relay_app.callback(invoke_without_command=True)
def relay(context: typer.Context) -> None:
    """Publish stored events to customer.events (at-least-once, per-customer order).

    A customer whose envelope cannot be published (larger than
    CLIENTELE_KAFKA_MAX_MESSAGE_BYTES) is parked; the others flow. See `relay redrive`.

    Example: clientele relay
    """
    if context.invoked_subcommand is not None:
        return
    from api.bootstrap import build
    from consumers.relay import Relay
    from infra import kafka
    from infra.runtime import settle_heap
    from projections.readstore import open_read_store

    settings, bootstrap = _full_mode()
    topics = kafka.Topics(settings.kafka_topic_prefix)
    limits = settings.kafka_limits
    kafka.ensure_topics(bootstrap, topics.all(), settings.kafka_partitions, limits)
    services = build()
    checkpoints = open_read_store(settings.database_url)
    publisher = Relay(services.feed, kafka.producer(bootstrap, limits), topics.events, checkpoints)
    _until_sigterm(publisher.stop)
    console.print(f"relaying from position {publisher.position()} to {topics.events}")
    try:
        settle_heap()
        publisher.run()
    finally:
        publisher.producer.close(timeout=10)
        checkpoints.close()
        services.close()


@relay_app.command("redrive")
def relay_redrive(
    customer: Annotated[UUID | None, typer.Option(help="Only this parked customer.")] = None,
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for the relay.")] = 30.0,
) -> None:
    """Retry parked customers now: the running relay publishes their held events in order.

    A limit too low stays too low: raise CLIENTELE_KAFKA_MAX_MESSAGE_BYTES and restart the
    relay (it retries every parked customer at start). Exit code 1 while one is still parked.

    Example: clientele relay redrive --customer 3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e
    """
    from rich.table import Table

    from consumers.relay import ensure_relay_tables, parking_lot, wake_relay
    from infra.settings import STORE_NOTICE
    from projections.readstore import open_read_store

    settings, _ = _full_mode()
    STORE_NOTICE(settings)
    wanted = None if customer is None else str(customer)
    lot = parking_lot()
    checkpoints = open_read_store(settings.database_url, pool_size=1)
    try:
        ensure_relay_tables(checkpoints)
        with checkpoints.transaction() as tx:
            before = {p.customer_id: p for p in lot.listing(tx, customer_id=wanted)}
            lot.retry_now(tx, wanted)
        wake_relay(settings.database_url)
        deadline = time.monotonic() + wait
        while True:
            with checkpoints.transaction() as tx:
                now = {p.customer_id: p for p in lot.listing(tx, customer_id=wanted)}
            waiting = [c for c in before if c in now and now[c].attempts <= before[c].attempts]
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    finally:
        checkpoints.close()
    table = Table("customer", "held at", "outcome")
    for key, was in before.items():
        if key not in now:
            verdict = "published; flows again"
        elif key in waiting:
            verdict = "not retried yet: is `clientele relay` running?"
        else:
            verdict = f"still parked: {now[key].reason}"
        table.add_row(key, f"v{was.version} @ {was.position} ({was.size} bytes)", verdict)
    Console().print(table if before else "no parked customers")
    if any(key in now for key in before):
        raise typer.Exit(1)


def consume(
    projection: Annotated[
        str | None, typer.Option(help="Only this read model (own consumer group).")
    ] = None,
) -> None:
    """Feed read models: from customer.events, and (segments) from the store's log in global
    order; run more processes to scale out.

    Example: clientele consume --projection profiles
    """
    from api.bootstrap import build, migrate
    from consumers.embedded import EmbeddedRunner
    from consumers.kafka_projection import ProjectionConsumer
    from infra import kafka
    from infra.runtime import settle_heap
    from projections.registry import by_name

    settings, bootstrap = _full_mode()
    topics = kafka.Topics(settings.kafka_topic_prefix)
    limits = settings.kafka_limits
    kafka.ensure_topics(bootstrap, topics.all(), settings.kafka_partitions, limits)
    services = build()
    migrate(services)
    projectors = [by_name(projection)] if projection else services.projectors
    from_topic = [p for p in projectors if not p.log_order]
    from_log = [p for p in projectors if p.log_order]
    group = f"clientele-{projection or 'projections'}"
    producer = kafka.producer(bootstrap, limits, dlq=True)  # dead letters and memberships
    worker = None
    if from_topic:
        worker = ProjectionConsumer(
            kafka.consumer(bootstrap, group, limits),
            producer,
            topic=topics.events,
            group=group,
            read_store=services.read_store,
            projectors=from_topic,
            personal=services.store.personal,
            feed=services.feed,
        )
    # Cross-customer read models need the global order Kafka's partitions do not keep; the
    # runner retries their parked customers from the store too.
    runner = EmbeddedRunner(services.feed, services.read_store, from_log, poll_interval=0.2)
    stopping = threading.Event()

    def stop() -> None:
        stopping.set()
        if worker is not None:
            worker.stop()

    _until_sigterm(stop)
    console.print(
        f"consuming {topics.events} as {group} into {', '.join(p.name for p in from_topic)}; "
        f"following the store's log into {', '.join(p.name for p in from_log)}"
    )
    publisher = _membership_publisher(services, producer, topics.segment_membership, from_log)
    if from_log:
        runner.start()
    try:
        settle_heap()
        if worker is not None:
            worker.run()
        while not stopping.wait(1.0):
            pass
    finally:
        runner.stop()
        if publisher is not None:
            publisher.stop()
        producer.close(timeout=10)
        services.close()


def _membership_publisher(
    services: Services, producer: KafkaProducer, topic: str, from_log: list[Projector]
) -> Every | None:
    """Publishes segment membership changes every second (started) when segments are fed."""
    from consumers.periodic import Every
    from consumers.segment_publisher import MembershipPublisher

    if not any(p.name == "segments" for p in from_log):
        return None
    outbox = MembershipPublisher(services.read_store, producer, topic)
    publisher = Every(1.0, outbox.publish_all, "segment-membership")
    publisher.start()
    return publisher


def ingest() -> None:
    """Execute commands from customer.commands; outcomes go to customer.command-results.

    Example: clientele ingest
    """
    from api.bootstrap import build
    from consumers.ingest import CommandIngest
    from infra import kafka
    from infra.runtime import settle_heap

    settings, bootstrap = _full_mode()
    topics = kafka.Topics(settings.kafka_topic_prefix)
    limits = settings.kafka_limits
    kafka.ensure_topics(bootstrap, topics.all(), settings.kafka_partitions, limits)
    services = build()
    worker = CommandIngest(
        kafka.consumer(bootstrap, "clientele-ingest", limits),
        kafka.producer(bootstrap, limits, dlq=True),
        services.commands,
        commands_topic=topics.commands,
        results_topic=topics.command_results,
    )
    _until_sigterm(worker.stop)
    console.print(f"executing commands from {topics.commands}")
    try:
        settle_heap()
        worker.run()
    finally:
        worker.producer.close(timeout=10)
        services.close()


dlq_app = typer.Typer(
    help="Dead letters: list them, re-drive them once fixed.", no_args_is_help=True
)


def _dlq_records(bootstrap: str, topic: str, group: str | None) -> tuple[KafkaConsumer, list[Any]]:
    from kafka import TopicPartition

    from infra import kafka
    from infra.settings import get_settings

    limits = get_settings().kafka_limits
    reader = kafka.consumer(bootstrap, group, limits, consumer_timeout_ms=3000)
    partitions = [
        TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or [])
    ]
    reader.assign(partitions)
    if group is None:
        reader.seek_to_beginning(*partitions)
    return reader, list(reader)


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[
        str | None, typer.Option(help="Source topic (without .dlq); default customer.events.")
    ] = None,
) -> None:
    """Show dead letters of a topic with the reason each was refused.

    Example: clientele dlq list --topic customer.commands
    """
    from rich.table import Table

    from consumers.dead_letters import from_record
    from infra import kafka

    settings, bootstrap = _full_mode()
    source = kafka.Topics(settings.kafka_topic_prefix).name(topic or kafka.EVENTS)
    reader, records = _dlq_records(bootstrap, source + kafka.DLQ_SUFFIX, None)
    reader.close()
    table = Table("dlq offset", "from", "key", "reason")
    for record in records:
        letter = from_record(record)
        table.add_row(
            str(record.offset),
            f"{letter.topic}[{letter.partition}]@{letter.offset}",
            (letter.key or b"").decode(errors="replace"),
            letter.reason,
        )
    Console().print(table)


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[
        str | None, typer.Option(help="Source topic (without .dlq); default customer.events.")
    ] = None,
) -> None:
    """Re-publish dead letters not replayed before to their original topic.

    Example: clientele dlq replay --topic customer.commands
    """
    from consumers.dead_letters import from_record
    from infra import kafka

    settings, bootstrap = _full_mode()
    source = kafka.Topics(settings.kafka_topic_prefix).name(topic or kafka.EVENTS)
    reader, records = _dlq_records(
        bootstrap, source + kafka.DLQ_SUFFIX, f"clientele-dlq-replay-{source}"
    )
    publisher = kafka.producer(bootstrap, settings.kafka_limits)
    try:
        for record in records:
            letter = from_record(record)
            publisher.send(
                letter.topic or source, key=letter.key, value=letter.value, headers=letter.headers
            ).get(timeout=30)
        reader.commit()
    finally:
        publisher.close(timeout=10)
        reader.close()
    console.print(f"replayed {len(records)} dead letters to {source}")
