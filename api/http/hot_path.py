"""GET profile's common case answered before FastAPI's router (issue 16, round 7).

``GET /v1/customers/{id}`` of a live customer, without query parameters or
``X-Min-Position``, by a key with the reader role, is the API's hottest request. FastAPI's
route matching, dependency solving and exception layers cost more CPU than the read itself
(BENCHMARKS.md, "Performance round 7 (issue 16): the API process"). :class:`HotProfileReads`
sits inside the edge middleware (:mod:`api.http.middleware`: its checks, ids, access log and
metrics stay as they are) and answers that case with the route's own code: the reader check
of :func:`api.http.auth.require` (:func:`~api.http.auth.admitted`), the route's read in the
event loop (:func:`api.http.routes.reads.live_in_loop`) and the key's rate limit, counted once.

Everything else goes on to FastAPI unchanged, and so does every request this path does not
answer 200: a missing, bad or revoked key, a key without the reader role, a key over its rate
limit, an id that is not a lowercase hyphenated UUID, an unknown, merged or erased customer,
SQLite read models. The full route then answers it, as it would have. The key's rate limit
is counted before the read (a key over it costs no database read), once: a counted request
that goes on is not counted again by the route, nor is its key looked up again (the lookup
keeps its key, or its failure, for the request: :mod:`api.http.auth`). An error of the read
itself (the database away) goes to the edge middleware as it does from the route: a 503.
"""

from __future__ import annotations

import re
from uuid import UUID

from fastapi import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from api.http.auth import admitted, counts
from api.http.routes import reads
from infra.api_keys import Role

CANONICAL_UUID = r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"


def _route_path(scope: Scope) -> str:
    """The path as the router matches it: below the app's ``root_path`` when mounted."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _profile_route() -> BaseRoute:
    """The route this path answers for (the access log and metrics name its template)."""
    return next(
        r for r in reads.router.routes if getattr(r, "endpoint", None) is reads.get_customer
    )


class HotProfileReads:
    """ASGI middleware: the live GET profile of an admitted reader, else the app behind it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = _profile_route()
        template = re.escape(getattr(self.route, "path", ""))  # "/v1/customers/{customer_id}"
        self.path = re.compile(template.replace(re.escape("{customer_id}"), CANONICAL_UUID))
        self.answered = 0  # requests this path answered (tests check it took them)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            match = self.path.fullmatch(_route_path(scope))
            if match is not None:
                # what the router sets for this path: the access log and metrics name the
                # route also when the read fails (the database away: a 503 from the edge)
                scope["route"] = self.route
                scope["path_params"] = {"customer_id": match[1]}
                request = Request(scope)
                key = admitted(request, Role.READER)
                if key is not None and counts(request, key):
                    answer = await reads.live_in_loop(request, UUID(match[1]))
                    if answer is not None:
                        self.answered += 1
                        await answer(scope, receive, send)
                        return
        await self.app(scope, receive, send)
