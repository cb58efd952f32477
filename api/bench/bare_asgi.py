"""The baselines of GET profile, under the same uvicorn settings as ``clientele serve``, each
reading the same profile row and sending the same bytes:

- ``bare``: a plain ASGI callable on one connection, the query run in the event loop — no
  framework, middleware, authentication, pool or transaction;
- ``fastapi``: the floor of the API's own design, one FastAPI sync route (run in the
  threadpool, as the API's routes are) on a psycopg pool, without our middleware,
  authentication, pre-ping or transaction.

Run by the bench as ``python -m api.bench.bare_asgi bare|fastapi PORT`` with
``CLIENTELE_DATABASE_URL`` naming the read models' database. ``GET /v1/customers/{id}``: 200
and the profile as the API renders it for a pii-scoped key with no churn model fitted (the
bench's live stack fits none, and checks the bytes are equal before measuring); 404 else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import psycopg
import uvicorn
from fastapi import FastAPI, Response
from psycopg_pool import ConnectionPool

from api.cli.serve import _bind
from projections import profile_fold

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Awaitable[None]]
PREFIX = "/v1/customers/"
QUERY = "SELECT state FROM profiles WHERE customer_id = %s"
JSON = [(b"content-type", b"application/json")]


def _document(row: tuple[Any, ...] | None) -> tuple[int, bytes]:
    """(status, body) for a profiles row: the API's bytes for it."""
    if row is None:
        return 404, b"{}"
    document = profile_fold.render(orjson.loads(row[0]))
    document["churn_risk"] = None
    return 200, orjson.dumps(document)


def bare_app(database_url: str) -> App:
    """The plain ASGI app on one autocommit connection to ``database_url``."""
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
            row = connections[0].execute(QUERY, (path.removeprefix(PREFIX),)).fetchone()
        status, body = _document(row)
        headers = [*JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def fastapi_app(database_url: str) -> FastAPI:
    """One FastAPI sync route on a pool of autocommit connections to ``database_url``."""
    pool = ConnectionPool(
        database_url, min_size=1, max_size=5, open=False, kwargs={"autocommit": True}
    )
    app = FastAPI(on_startup=[pool.open], on_shutdown=[pool.close])

    @app.get("/v1/customers/{customer_id}")
    def profile(customer_id: str) -> Response:
        with pool.connection() as connection:
            status, body = _document(connection.execute(QUERY, (customer_id,)).fetchone())
        return Response(body, status, media_type="application/json")

    return app


def main(kind: str, port: int) -> None:
    """Serve the ``kind`` baseline on 127.0.0.1:``port`` as ``clientele serve`` serves the API."""
    url = os.environ["CLIENTELE_DATABASE_URL"]
    app = bare_app(url) if kind == "bare" else fastapi_app(url)
    config = uvicorn.Config(app, log_config=None, access_log=False)
    uvicorn.Server(config).run(sockets=[_bind("127.0.0.1", port)])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
