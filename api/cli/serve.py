"""``clientele serve``: the HTTP API."""

from __future__ import annotations

import errno
import socket
from typing import Annotated

import typer

from api.cli.support import fail, say_on_stderr


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
) -> None:
    """Start the HTTP API. It answers at once; in embedded mode the read models catch up on
    any backlog in the background (see GET /projections).

    Exit code 1 with a one-line error when the address cannot be bound (port in use, …).
    Started while the database is away, it listens at once and answers 503 (GET /readyz
    too) until the database answers; exit code 3 when starting fails for another reason.

    Example: clientele serve --port 8080
    """
    listening = _bind(host, port)
    bound = listening.getsockname()[1]
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
    say_on_stderr(f"listening on {url} (API docs: {url}/docs)")
    import uvicorn

    from api.http.app import create_app

    app = create_app()
    config = uvicorn.Config(app, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    app.state.stop_server = lambda: setattr(server, "should_exit", True)
    server.run(sockets=[listening])
    startup = getattr(app.state, "startup", None)
    if startup is not None and startup.fatal is not None:
        raise fail(f"could not start: {startup.fatal}", 3)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), or exit 1 saying why in one line."""
    try:
        family, kind, proto, _, _ = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        # proto IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that
        # say they are TCP; without it every keep-alive response waited ~40 ms for a delayed ACK
        listening = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as error:
        raise fail(f"cannot listen on {host}:{port}: {error}") from None
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(2048)
    except OSError as error:
        listening.close()
        reasons = {
            errno.EADDRINUSE: f"port {port} on {host} is already in use (another clientele "
            f"serve?): pick another with --port, e.g. `make run PORT={port + 1}`",
            errno.EACCES: f"no permission to listen on port {port} (ports below 1024 need "
            "root): pick another with --port",
            errno.EADDRNOTAVAIL: f"{host} is not an address of this machine: pick another "
            "with --host (127.0.0.1, 0.0.0.0, …)",
        }
        raise fail(
            reasons.get(error.errno or 0, f"cannot listen on {host}:{port}: {error}")
        ) from None
    return listening
