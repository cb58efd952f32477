"""``clientele models``: fit the churn model (BG/NBD) on the base and look at its versions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from api.cli.support import console, fail

models_app = typer.Typer(
    help="Models: the churn model (BG/NBD) fitted on the base, versioned as events.",
    no_args_is_help=True,
)


@models_app.command("fit")
def fit(
    as_of: Annotated[
        datetime | None,
        typer.Option(help="Summarise the base as of this instant, with a zone (default: now)."),
    ] = None,
    horizon_days: Annotated[
        int, typer.Option(help="N of 'expected purchases in the next N days' (1-3650).")
    ] = 90,
) -> None:
    """Fit the churn model on every live customer's purchases (frequency, recency, T in days as
    of --as-of) and record the fit as the model's next version (an event). Needs the models
    extra (scipy). In embedded mode the read models are caught up first.

    Example: clientele models fit --horizon-days 30
    """
    from bootstrap import build
    from bootstrap.policy_processes import model_fitter
    from commands.service import Context
    from consumers.migrate import migrate
    from domain.errors import DomainError, InvalidInput

    if as_of is not None and as_of.tzinfo is None:
        raise fail("--as-of needs a time zone, e.g. 2026-01-31T23:59:59Z", 2)
    with build() as services:
        migrate(services)
        if services.runner is not None:
            services.runner.catch_up()
        try:
            recorded = model_fitter(services).fit(
                as_of.astimezone(UTC) if as_of else None,
                horizon_days,
                Context(actor="clientele:models-fit"),
            )
        except InvalidInput as error:
            raise fail(f"--{error.field.replace('_', '-')}: {error.reason}", 2) from None
        except DomainError as error:
            raise fail(error.message, 2) from None
        if services.runner is not None:
            services.runner.catch_up()
    console.print_json(json.dumps(recorded.view()))


@models_app.command("show")
def show(
    version: Annotated[int | None, typer.Option(help="An older version.")] = None,
) -> None:
    """Print a fitted version of the churn model (default: the newest) as JSON.

    Example: clientele models show
    """
    from bootstrap import build
    from domain.errors import DomainError

    with build() as services:
        try:
            found = services.models.version(version)
        except DomainError as error:
            raise fail(error.message, 2) from None
    console.print_json(json.dumps(found.view()))
