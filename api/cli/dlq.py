"""``clientele dlq``: dead letters of a topic: list them, re-drive them once fixed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from api.cli.support import full_mode

if TYPE_CHECKING:
    from kafka import KafkaConsumer

console = Console(stderr=True)

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

    settings, bootstrap = full_mode()
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

    settings, bootstrap = full_mode()
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
