"""The bare-ASGI baseline of GET profile: a plain ASGI callable under the same uvicorn
settings as ``clientele serve`` that reads the same profile row and sends the same bytes —
without the framework, middleware, authentication, connection pool or transaction.

Run by the bench as ``python -m api.bench.bare_asgi PORT`` with ``CLIENTELE_DATABASE_URL``
naming the read models' database. ``GET /v1/customers/{id}``: 200 and the profile document
as the API renders it for a pii-scoped key with no churn model fitted (the bench's live stack
fits none, and checks the bytes are equal before measuring); 404 for anyone else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import psycopg
import uvicorn

from api.cli.serve import _bind
from projections import profile_fold

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
PREFIX = "/v1/customers/"
JSON = [(b"content-type", b"application/json")]


def profile_app(database_url: str) -> Callable[[Message, Receive, Send], Awaitable[None]]:
    """The ASGI app on one autocommit connection to ``database_url`` (opened at startup)."""
    connections: list[psycopg.Connection[Any]] = []

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                connections.append(psycopg.connect(database_url, autocommit=True))
                await send({"type": "lifespan.startup.complete"})
            for connection in connections:  # lifespan.shutdown
                connection.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        path: str = scope["path"]
        row = None
        if path.startswith(PREFIX):
            row = (
                connections[0]
                .execute(
                    "SELECT state FROM profiles WHERE customer_id = %s",
                    (path.removeprefix(PREFIX),),
                )
                .fetchone()
            )
        status, body = 404, b"{}"
        if row is not None:
            document = profile_fold.render(orjson.loads(row[0]))
            document["churn_risk"] = None
            status, body = 200, orjson.dumps(document)
        headers = [*JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main(port: int) -> None:
    """Serve the app on 127.0.0.1:``port`` as ``clientele serve`` serves the API."""
    config = uvicorn.Config(
        profile_app(os.environ["CLIENTELE_DATABASE_URL"]), log_config=None, access_log=False
    )
    uvicorn.Server(config).run(sockets=[_bind("127.0.0.1", port)])


if __name__ == "__main__":
    main(int(sys.argv[1]))
