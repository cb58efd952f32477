"""``clientele dev``: local PostgreSQL + Kafka-protocol broker for full mode (no Docker)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console

from api.cli.support import fail

if TYPE_CHECKING:
    from infra.local_services import KafkaBroker, PostgresCluster

dev_app = typer.Typer(
    help="Local PostgreSQL + Kafka-protocol broker for full mode (no Docker).", no_args_is_help=True
)
console = Console(stderr=True)
DEV_DIR = Path("var/dev")  # its settings file is infra.settings.DEV_SETTINGS_FILE


def _state_file(root: Path) -> Path:
    return root / "services.json"


def _settings_file(root: Path) -> Path:
    return root / "clientele.env"


def _local_services(root: Path) -> tuple[PostgresCluster, KafkaBroker] | None:
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
        "export CLIENTELE_ENV=dev\n"
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
        "# A development setup: the secrets may keep their public development defaults.\n"
        "CLIENTELE_ENV=dev\n"
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
    known = _local_services(root)
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
    try:
        created = kafka.ensure_topics(
            broker.bootstrap,
            kafka.Topics(settings.kafka_topic_prefix).all(),
            partitions,
            settings.kafka_limits,
        )
    except kafka.PartitionCountMismatch as error:
        raise fail(str(error), 2) from None
    console.print(f"ready; topics created: {', '.join(created) or 'none (already there)'}")
    _write_settings(root, postgres, broker)
    typer.echo(_exports(postgres, broker))


@dev_app.command("down")
def dev_down(root: Annotated[Path, typer.Option()] = DEV_DIR) -> None:
    """Stop the local services (their data stays under --root) and remove their settings
    file: commands run here use the embedded SQLite store again.

    Example: clientele dev down
    """
    known = _local_services(root.resolve())
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
    known = _local_services(root.resolve())
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
