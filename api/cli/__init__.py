"""The ``clientele`` command line (typer + rich): the one place every command is registered.
Every command has ``--help`` with an example.

One module per command group; each only parses, calls what :mod:`bootstrap` built, and
renders. Start-up stays short: this module and the command modules import only typer, rich
and the standard library at the top; each command imports what it needs (see
:mod:`api.cli.support`).
"""

from __future__ import annotations

import typer

from api.cli.audit import audit_app
from api.cli.bench import bench
from api.cli.campaigns import campaigns_app
from api.cli.consumers import consumers_app
from api.cli.dev import dev_app
from api.cli.dlq import dlq_app
from api.cli.duplicates import duplicates_app
from api.cli.erase import erase
from api.cli.imports import import_app
from api.cli.keys import keys_app
from api.cli.migrate import migrate
from api.cli.models import models_app
from api.cli.policies import policies_app
from api.cli.processes import consume, ingest, relay_app
from api.cli.projections import projections_app
from api.cli.segments import segments_app
from api.cli.serve import serve
from api.cli.support import say_on_stderr
from api.cli.timeline import replay

app = typer.Typer(
    name="clientele",
    help="Event-sourced customer records: commands, event store, read models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(import_app, name="import")
app.add_typer(projections_app, name="projections")
app.add_typer(segments_app, name="segments")
app.add_typer(duplicates_app, name="duplicates")
app.add_typer(policies_app, name="policies")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.command("erase")(erase)
app.add_typer(dev_app, name="dev")
app.add_typer(relay_app, name="relay")
app.add_typer(consumers_app, name="consumers")
app.command("consume")(consume)
app.command("ingest")(ingest)
app.add_typer(dlq_app, name="dlq")
app.add_typer(audit_app, name="audit")
app.command("bench")(bench)
app.command("serve")(serve)
app.command("migrate")(migrate)
app.command("replay")(replay)


@app.callback()
def main() -> None:
    """Configuration: CLIENTELE_* environment variables, else ./var/dev/clientele.env (written
    by `clientele dev up`), else the embedded defaults (see README). Commands that open a
    store say which on stderr."""
    from infra.logging import configure_logging
    from infra.settings import STORE_NOTICE, ConfigurationError, get_settings

    try:
        settings = get_settings()
    except ConfigurationError as error:
        typer.echo(f"configuration error: {error}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, json=settings.log_json)
    STORE_NOTICE.arm(say_on_stderr)
