"""``clientele keys``: make, list and revoke API keys; re-wrap data keys with a new master key."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from infra.api_keys import KeyStore, Role

keys_app = typer.Typer(
    help="API keys: create (secret shown once), list, revoke.", no_args_is_help=True
)
console = Console()
DEV_KEY_NAME = "local-dev"


def _store() -> KeyStore:
    from infra.settings import get_settings

    return KeyStore(get_settings().api_keys_file)


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what uses the key.")],
    role: Annotated[
        list[Role],
        typer.Option("--role", help="writer, reader, auditor, marketer or admin (repeatable)."),
    ],
    pii: Annotated[bool, typer.Option("--pii", help="May see unmasked personal data.")] = False,
) -> None:
    """Create a key and print its secret (only now; only a hash is stored).

    Example: clientele keys create orders-service --role writer --role reader
    """
    from domain.errors import InvalidInput

    try:
        key, token = _store().create(name, role, pii=pii)
    except InvalidInput as error:
        console.print(f"[red]error:[/] {error.message}")
        raise typer.Exit(2) from None
    console.print(f"key id {key.key_id} ({', '.join(key.roles)}{', pii' if key.pii else ''})")
    typer.echo(token)


@keys_app.command("list")
def list_keys() -> None:
    """List keys (never their secrets).

    Example: clientele keys list
    """
    table = Table("key id", "name", "roles", "pii", "created", "revoked")
    for key in _store().list():
        table.add_row(
            key.key_id,
            key.name,
            ",".join(key.roles),
            "yes" if key.pii else "",
            key.created_at[:19],
            (key.revoked_at or "")[:19],
        )
    console.print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key id shown by `keys list`.")]) -> None:
    """Revoke a key at once (running servers re-read the key file).

    Example: clientele keys revoke 3fa2c1d09b7e
    """
    try:
        key = _store().revoke(key_id)
    except KeyError:
        console.print(f"[red]error:[/] no key {key_id}")
        raise typer.Exit(1) from None
    console.print(f"revoked {key.key_id} ({key.name})")


@keys_app.command("dev")
def dev_key(
    port: Annotated[int, typer.Option(help="Port of the local API, for the printed curl.")] = 8000,
) -> None:
    """Print the local development key (admin + pii), making it on first use, and a curl to
    try it (one option per line, ready to paste).

    Its secret is kept in ./var/dev-api-key next to the key file, for local use only.

    Example: clientele keys dev --port 8080
    """
    from infra.settings import get_settings

    settings = get_settings()
    secret_file = settings.api_keys_file.parent / "dev-api-key"
    store = KeyStore(settings.api_keys_file)
    if secret_file.exists() and store.authenticate(secret_file.read_text().strip()):
        token = secret_file.read_text().strip()
    else:
        _, token = store.create(DEV_KEY_NAME, [Role.ADMIN], pii=True)
        secret_file.write_text(token + "\n")
        secret_file.chmod(0o600)
    # Plain lines, never wrapped by the terminal's width: a wrapped token cannot be pasted.
    typer.echo(f"local dev API key (admin, pii), kept in {_shown(secret_file)}:")
    typer.echo(token)
    typer.echo("try it:")
    typer.echo(f"curl -s http://127.0.0.1:{port}/v1/customers \\")
    typer.echo(f'  -H "Authorization: Bearer $(cat {_shown(secret_file)})"')


@keys_app.command("rotate-master")
def rotate_master() -> None:
    """Re-wrap every customer data key with the current (first) master key of
    CLIENTELE_MASTER_KEYS; afterwards the older master keys can be removed from it.
    Events are never rewritten.

    Example: CLIENTELE_MASTER_KEYS=new:<base64>,old:<base64> clientele keys rotate-master
    """
    import orjson

    from bootstrap import build

    with build() as services:
        rewrapped = services.store.data_keys.rotate()
        current = services.store.data_keys.master.current
    typer.echo(orjson.dumps({"rewrapped": rewrapped, "master_key": current}).decode())


def _shown(path: Path) -> str:
    """``path`` as a shell argument: relative to the working directory when inside it."""
    resolved = path.resolve()
    try:
        return shlex.quote(str(resolved.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(resolved))
