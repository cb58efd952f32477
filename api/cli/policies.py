"""``clientele policies``: load policy documents, look at them, simulate, sweep, run."""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli.support import console, fail, progress_bar

if TYPE_CHECKING:
    from bootstrap import Services

policies_app = typer.Typer(
    help="Policies: versioned rules the policy runner decides by.", no_args_is_help=True
)
At = Annotated[
    datetime | None,
    typer.Option(help="Business time to decide as of, with a zone (default: now)."),
]


def _aware(at: datetime | None) -> datetime:
    from datetime import UTC

    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is None:
        raise fail("--at needs a time zone, e.g. 2026-01-31T23:59:59Z", 2)
    return at.astimezone(UTC)


def _read(path: Path) -> dict[str, Any]:
    """``{policy name: document}`` from a TOML or JSON file."""
    import tomllib

    try:
        raw = path.read_bytes()
    except OSError as error:
        raise fail(f"cannot read {path}: {error.strerror}", 2) from None
    try:
        doc = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise fail(f"{path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {error}", 2) from None
    if not isinstance(doc, dict) or not doc:
        raise fail(f"{path} must map policy names to documents, e.g. [lifecycle.at_risk]", 2)
    return doc


@policies_app.command("load")
def load(
    file: Annotated[Path, typer.Argument(help="A .toml or .json file: {name: document}.")],
    effective_at: Annotated[
        datetime | None,
        typer.Option(help="Business time the new versions apply from (default: now)."),
    ] = None,
) -> None:
    """Record each policy in FILE as its next version (unchanged documents record nothing).
    Every document is checked before any is recorded; an error names the file's field.

    Example: clientele policies load policies.toml
    """
    from bootstrap import build
    from commands.service import Context
    from domain.errors import InvalidInput
    from domain.policy import parse_document

    documents = _read(file)
    when = _aware(effective_at)
    try:
        for name, document in documents.items():
            parse_document(name, document)
    except InvalidInput as error:
        where = error.field if error.field == "name" else f"{name}.{error.field}"
        raise fail(f"{file}: {where.replace('.document', '')}: {error.reason}", 2) from None
    with build() as services:
        context = Context(actor="clientele:policies-load")
        for name, document in documents.items():
            try:
                recorded = services.policies.define(name, document, context, effective_at=when)
            except InvalidInput as error:
                raise fail(f"{file}: {name}: {error.message}", 2) from None
            state = "recorded" if recorded.changed else "unchanged"
            console.print(f"{name}: version {recorded.version.version} ({state})")


@policies_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Policy name, e.g. lifecycle.")],
    version: Annotated[int | None, typer.Option(help="An older version.")] = None,
) -> None:
    """Print a policy version (default: the newest) as JSON.

    Example: clientele policies show lifecycle
    """
    from bootstrap import build
    from domain.errors import DomainError

    with build() as services:
        try:
            found = services.policies.version(name, version)
        except DomainError as error:
            raise fail(error.message, 2) from None
    console.print_json(json.dumps(found.view()))


@policies_app.command("simulate")
def simulate(
    at: At = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List the changes a sweep as of --at would make (lifecycle stages; loyalty points and
    tiers), changing nothing (--at may be in the future: "who would be at risk by the end of
    the month?").

    Example: clientele policies simulate --at 2026-12-31T23:59:59Z
    """
    from bootstrap import build
    from bootstrap.policy_processes import policy_runners

    when = _aware(at)
    with build() as services:
        runners = [r for r in policy_runners(services) if r.policy() is not None]
        if not runners:
            raise fail("no policy is defined (clientele policies load FILE)", 2)
        counts = {}
        for runner in runners:
            counts[runner.name] = 0
            for planned in runner.simulate(when):
                counts[runner.name] += 1
                view = planned.view()
                if as_json:
                    console.print_json(json.dumps(view), indent=None)
                else:
                    console.print(_line(view), soft_wrap=True)
    if not as_json:
        for name, count in counts.items():
            what = "stage changes" if name == "lifecycle" else f"{name} steps"
            console.print(f"{count} {what} would be made as of {when.isoformat()}")


def _line(view: dict[str, Any]) -> str:
    """One planned change in words."""
    change = (
        f"{view['from']} → {view['to']}"
        if view.get("kind", "tier") == "tier"
        else f"{view['kind']} {view['points']} points"
    )
    return (
        f"{view['customer_id']}  {change}  at {view['at']}  "
        f"(rule {view['rule']}, policy v{view['policy_version']})"
    )


@policies_app.command("sweep")
def sweep(at: At = None) -> None:
    """Decide as of --at (now or earlier) for every customer and record the changes: lifecycle
    stages, then loyalty points and tiers. Safe to re-run and to run beside another sweep: a
    decision is never recorded twice.

    Example: clientele policies sweep
    """
    from bootstrap import build
    from bootstrap.policy_processes import policy_runners
    from domain.errors import InvalidInput

    when = _aware(at)
    with build() as services, progress_bar() as bar:
        reports = []
        for runner in policy_runners(services):
            if runner.policy() is None:
                continue
            task = bar.add_task(f"{runner.name}: sweeping", total=_customer_count(services))
            try:
                reports.append((runner.name, runner.sweep(when, partial(bar.advance, task))))
            except InvalidInput as error:
                raise fail(f"--{error.field}: {error.reason}", 2) from None
    for name, report in reports:
        what = "stage changes" if name == "lifecycle" else f"{name} steps"
        console.print(
            f"{report.customers} customers as of {report.at}: {report.recorded} {what} "
            f"recorded, {report.replayed} already recorded, {report.rejected} rejected"
        )
        for problem in report.problems[:10]:
            console.print(f"  rejected: {problem['message']}", soft_wrap=True)


def _customer_count(services: Services) -> int | None:
    from consumers.lifecycle_policy import REGISTERED

    return services.store.backend.count_after(REGISTERED, 0)


@policies_app.command("run")
def run() -> None:
    """Run the policy runner (embedded and full mode alike): react to purchases as they are
    recorded, and sweep as of now every CLIENTELE_POLICY_SWEEP_SECONDS. Stops on SIGTERM.

    Example: clientele policies run
    """
    from api.cli.processes import run_process
    from bootstrap import policy_processes

    run_process(policy_processes.policy_runner, needs_kafka=False)
