"""``clientele campaigns``: create, launch, read results of and export campaigns (issue 19)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from api.cli.support import console, fail, progress_bar

if TYPE_CHECKING:
    from commands.campaigns import CampaignService

campaigns_app = typer.Typer(
    help="Campaigns: targeted marketing with a holdout control group.", no_args_is_help=True
)
CampaignId = Annotated[str, typer.Argument(help="The campaign id (from campaigns create).")]


def _campaign_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise fail(f"{text!r} is not a campaign id (a UUID)", 2) from None


def _get(campaigns: CampaignService, campaign_id: str) -> Any:
    from domain.errors import DomainError

    try:
        return campaigns.get(_campaign_id(campaign_id))
    except DomainError as error:
        raise fail(error.message, 2) from None


@campaigns_app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="A JSON file with the campaign (README).")],
) -> None:
    """Create a draft campaign from FILE and print it (with its id).

    Example: clientele campaigns create spring.json
    """
    from bootstrap import build
    from commands.service import Context
    from domain.errors import InvalidInput

    try:
        document = json.loads(file.read_bytes())
    except OSError as error:
        raise fail(f"cannot read {file}: {error.strerror}", 2) from None
    except ValueError as error:
        raise fail(f"{file} is not valid JSON: {error}", 2) from None
    with build() as services:
        try:
            campaign, _ = services.campaigns.create(
                document, Context(actor="clientele:campaigns-create")
            )
        except InvalidInput as error:
            raise fail(f"{file}: {error.message}", 2) from None
    console.print_json(json.dumps(campaign.view()))


@campaigns_app.command("launch")
def launch(campaign_id: CampaignId) -> None:
    """Launch a campaign (or resume a launch that stopped): freeze its audience, target every
    eligible member, print the counts, the position the audience was frozen at
    (launch_position) and the store position the launch reached (position: read the launch's
    writes with X-Min-Position set to it). Shows progress.

    Example: clientele campaigns launch 3f0c…
    """
    from bootstrap import build
    from commands.service import Context
    from consumers.campaign_launch import LaunchProgress
    from domain.errors import DomainError

    with build() as services, progress_bar() as bar:
        task = bar.add_task("targeting", total=None)

        def shown(progress: LaunchProgress) -> None:
            bar.update(task, total=progress.total, completed=progress.done)

        try:
            counts = services.launcher.launch(
                _campaign_id(campaign_id), Context(actor="clientele:campaigns-launch"), shown
            )
        except DomainError as error:
            raise fail(error.message, 2) from None
    console.print_json(json.dumps(counts))


@campaigns_app.command("launch-due")
def launch_due() -> None:
    """Launch every scheduled campaign whose time has come, and resume stopped launches (the
    policy runner does this by itself every CLIENTELE_CAMPAIGN_SCHEDULE_SECONDS); print
    {campaign_id: answer} (what `launch` prints).

    Example: clientele campaigns launch-due
    """
    from datetime import UTC

    from bootstrap import build
    from commands.service import Context
    from domain.errors import DomainError

    with build() as services:
        try:
            launched = services.launcher.launch_due(
                datetime.now(UTC), Context(actor="clientele:campaigns-launch-due")
            )
        except DomainError as error:
            raise fail(error.message, 2) from None
    console.print_json(json.dumps(launched))


@campaigns_app.command("dispatch")
def dispatch(campaign_id: CampaignId) -> None:
    """Publish a launched campaign's treatment members to the campaign.dispatch topic (full
    mode), consent checked again now; print {sent, skipped}.

    Example: clientele campaigns dispatch 3f0c…
    """
    from bootstrap import build
    from bootstrap.processes import NeedsKafka, campaign_dispatcher
    from domain.errors import DomainError

    with build() as services:
        target = _get(services.campaigns, campaign_id).id
        try:
            with campaign_dispatcher(services) as dispatcher:
                counts = dispatcher.dispatch(target)
        except (DomainError, NeedsKafka) as error:
            raise fail(str(error), 2) from None
    console.print_json(json.dumps(counts))


@campaigns_app.command("results")
def results(
    campaign_id: CampaignId,
    as_of: Annotated[
        datetime | None, typer.Option(help="Business time, with a zone (default: now).")
    ] = None,
) -> None:
    """Print a campaign's results as JSON: groups, uplift with 95 % intervals, ROI.

    Example: clientele campaigns results 3f0c… --as-of 2026-04-01T00:00:00Z
    """
    from bootstrap import build
    from consumers.embedded import catch_up_read_models
    from domain.errors import DomainError
    from projections.campaign_results import report

    if as_of is not None and as_of.tzinfo is None:
        raise fail("--as-of needs a time zone, e.g. 2026-01-31T23:59:59Z", 2)
    with build() as services:
        campaign = _get(services.campaigns, campaign_id)
        catch_up_read_models(services)
        try:
            with services.read_store.snapshot() as tx:
                document = report(tx, campaign.view(), as_of)
        except DomainError as error:
            raise fail(error.message, 2) from None
    console.print_json(json.dumps(document))


@campaigns_app.command("export")
def export(
    campaign_id: CampaignId,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    as_format: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
    group: Annotated[
        str, typer.Option(help="treatment (who to send to), control, or all.")
    ] = "treatment",
) -> None:
    """Export the audience (live members; erased or merged customers left out): customer_id,
    group.

    Example: clientele campaigns export 3f0c… --format jsonl -o audience.jsonl
    """
    import csv

    from bootstrap import build
    from consumers.embedded import catch_up_read_models
    from projections.campaigns import audience

    if as_format not in ("csv", "jsonl"):
        raise fail("--format must be csv or jsonl", 2)
    if group not in ("treatment", "control", "all"):
        raise fail("--group must be treatment, control or all", 2)
    with build() as services:
        campaign = _get(services.campaigns, campaign_id)
        catch_up_read_models(services)
        sink = sys.stdout if output is None else output.open("w", newline="", encoding="utf-8")
        try:
            writer = csv.writer(sink) if as_format == "csv" else None
            if writer is not None:
                writer.writerow(["customer_id", "group"])
            after = ""
            while True:
                with services.read_store.snapshot() as tx:
                    rows = audience(
                        tx,
                        str(campaign.id),
                        group=None if group == "all" else group,
                        after=after,
                        limit=5000,
                    )
                for customer, member_group in rows:
                    if writer is not None:
                        writer.writerow([customer, member_group])
                    else:
                        sink.write(
                            json.dumps({"customer_id": customer, "group": member_group}) + "\n"
                        )
                if len(rows) < 5000:
                    break
                after = rows[-1][0]
        finally:
            if output is not None:
                sink.close()
