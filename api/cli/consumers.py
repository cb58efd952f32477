"""``clientele consumers``: the Kafka consumer groups that feed read models — where their
offsets stand against the topic, and moving them without anyone editing ``consumer_offsets``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.support import console, errors, fail, full_mode

consumers_app = typer.Typer(
    help="Kafka consumer groups of the read models: status, reset.", no_args_is_help=True
)


@consumers_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Per consumer group: its stored offsets against the topic's end offsets (lag in
    records), where its read models stand in the store against the store's head (lag in
    events), parked customers, and whether it is stuck (its offsets no longer count in the
    topic: the broker lost it). Exit code 1 while a group is stuck.

    Example: clientele consumers status
    """
    import orjson
    from rich.table import Table

    from bootstrap import build
    from consumers.consumer_offsets import ensure_tables
    from consumers.migrate import migrate
    from consumers.status import consumer_groups
    from infra.kafka import Topics
    from infra.kafka_topics import TopicInspector

    settings, bootstrap = full_mode()
    with build() as services:
        migrate(services)
        ensure_tables(services.read_store)
        inspector = TopicInspector(bootstrap)
        try:
            report = consumer_groups(
                services, inspector, Topics(settings.kafka_topic_prefix).events
            )
        finally:
            inspector.close()
    if as_json:
        typer.echo(orjson.dumps({"groups": report}).decode())
    else:
        table = Table(
            "group", "projections", "offsets: stored / end", "lag (records)",
            "store: position / head", "lag (events)", "parked", "state",
        )  # fmt: skip
        for group in report:
            stored = sum(p["stored"] or 0 for p in group["partitions"])
            ends = sum(p["end"] or 0 for p in group["partitions"])
            state = "stuck: " + "; ".join(group["reasons"]) if group["stuck"] else "ok"
            table.add_row(
                group["group"],
                ", ".join(group["projections"]),
                f"{stored:,} / {ends:,} ({len(group['partitions'])} partitions)",
                f"{group['lag']:,}",
                f"{group['position']:,} / {group['head']:,}",
                f"{group['behind']:,}",
                str(group["parked"]),
                state,
            )
        console.print(table if report else "no consumer group has stored offsets yet")
    if any(group["stuck"] for group in report):
        raise typer.Exit(1)


@consumers_app.command("reset")
def reset(
    projection: Annotated[
        str,
        typer.Argument(
            help="The read model whose group to reset (`consume --projection NAME`), or "
            "`projections` for the group of plain `clientele consume`."
        ),
    ],
    to_store_position: Annotated[
        int | None,
        typer.Option(min=0, help="Re-apply the store's events after this position first."),
    ] = None,
    to_latest: Annotated[
        bool, typer.Option(help="Follow the topic from its end (the default).")
    ] = False,
) -> None:
    """Move a consumer group's offsets to the topic's end, safely: its read models first get
    from the event store every event they lack (after --to-store-position N, else all;
    what they have is skipped by version), so nothing is skipped. Stop the group's `clientele
    consume` processes first (refused while it has members). The consumers do the same by
    themselves when they notice the broker lost the topic.

    Example: clientele consumers reset profiles --to-store-position 120000
    """
    from bootstrap import build
    from consumers import consumer_offsets
    from consumers.migrate import migrate
    from consumers.status import DEFAULT_GROUP, GROUP_PREFIX, group_projections
    from infra.kafka import Topics
    from infra.kafka_topics import TopicInspector

    if to_latest and to_store_position is not None:
        raise fail("give --to-store-position or --to-latest, not both", 2)
    settings, bootstrap = full_mode()
    group = DEFAULT_GROUP if projection == "projections" else f"{GROUP_PREFIX}{projection}"
    topic = Topics(settings.kafka_topic_prefix).events
    with build() as services:
        fed = group_projections(services.projectors, group)
        if not fed:
            known = ", ".join(group_projections(services.projectors, DEFAULT_GROUP))
            raise fail(
                f"{projection!r} is not fed from Kafka; give one of: projections, {known}", 2
            )
        migrate(services)
        consumer_offsets.ensure_tables(services.read_store)
        inspector = TopicInspector(bootstrap)
        try:
            members = inspector.members(group)
            if members is None:
                errors.print(
                    f"[yellow]warning:[/] the broker does not say whether {group} has members: "
                    "make sure its `clientele consume` processes are stopped"
                )
            elif members:
                raise fail(
                    f"consumer group {group} has {members} member(s): stop its `clientele "
                    "consume` processes first",
                    2,
                )
            state = inspector.state(topic)  # BEFORE the catch-up: see consumer_offsets
            if not state.exists:
                raise fail(f"topic {topic!r} is missing: `clientele relay` creates it", 2)
            projectors = [p for p in services.projectors if p.name in fed]
            applied = consumer_offsets.reset(
                services.feed,
                services.read_store,
                projectors,
                group=group,
                state=state,
                partitions=list(state.end_offsets),
                after=to_store_position or 0,
            )
        finally:
            inspector.close()
    ends = sum(state.end_offsets.values())
    console.print(
        f"{group}: {applied:,} events read from the store after position "
        f"{to_store_position or 0:,} into {', '.join(fed)}; offsets moved to the end of "
        f"{topic} ({ends:,} records in {state.partitions} partitions)"
    )
