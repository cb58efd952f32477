"""GET profile's common cases answered before FastAPI's router (issue 16, rounds 7 and 13).

``GET /v1/customers/{id}`` of a live customer, without query parameters or
``X-Min-Position``, by a key with the reader role, is the API's hottest request. FastAPI's
route matching, dependency solving and exception layers cost more CPU than the read itself
(BENCHMARKS.md, "Performance round 7 (issue 16): the API process"). :class:`HotProfileReads`
sits inside the edge middleware (:mod:`api.http.middleware`: its checks, ids, access log and
metrics stay as they are) and answers that case with the route's own code: the reader check
of :func:`api.http.auth.require` (:func:`~api.http.auth.admitted`), the route's read in the
event loop (:func:`api.http.routes.reads.live_in_loop`) and the key's rate limit, counted once.

Time travel (the same path with ``as_of``, ``known_at`` or ``version``) is answered the same
way: its query is validated by FastAPI's own code with the route's own parameters
(``request_params_to_args`` over the route's ``dependant.query_params``: the same parsing,
the same values, the same refusals), the moments are checked by the route's check
(:func:`~api.http.routes.reads.travels`), and the view is folded by the route's code in a
worker thread, as the route runs it (:func:`~api.http.routes.reads.travel_response`).

Everything else goes on to FastAPI unchanged, and so does every request this path does not
answer 200: a missing, bad or revoked key, a key without the reader role, a key over its rate
limit, an id that is not a lowercase hyphenated UUID, an unknown, merged or erased customer,
SQLite read models (live reads only), a query the route refuses or ignores (no view in time).
The full route then answers it, as it would have. One exception: a view in time whose fold
raises a domain error (no registration by then: 404) is answered here by the app's own
handler (:func:`~api.http.problems.domain_problem`, the same bytes), not folded a second time
by the route. The key's rate limit is counted before the read (a key over it costs no
database read), once: a counted request that goes on is not counted again by the route, nor is
its key looked up again (the lookup keeps its key, or its failure, for the request:
:mod:`api.http.auth`). An error of the read itself (the database away) goes to the edge
middleware as it does from the route: a 503.
"""

from __future__ import annotations

import re
from uuid import UUID

from fastapi import Request, Response
from fastapi.dependencies.utils import request_params_to_args
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.http.auth import admitted, counts
from api.http.problems import domain_problem
from api.http.routes import reads
from domain.errors import DomainError
from infra.api_keys import Role

CANONICAL_UUID = r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"


def _route_path(scope: Scope) -> str:
    """The path as the router matches it: below the app's ``root_path`` when mounted."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _profile_route() -> APIRoute:
    """The route this path answers for (the access log and metrics name its template)."""
    return next(
        r
        for r in reads.router.routes
        if isinstance(r, APIRoute) and r.endpoint is reads.get_customer
    )


class HotProfileReads:
    """ASGI middleware: the live GET profile and the time travel of an admitted reader, else
    the app behind it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = _profile_route()
        self.path = re.compile(
            re.escape(self.route.path).replace(re.escape("{customer_id}"), CANONICAL_UUID)
        )
        self.query = self.route.dependant.query_params  # as_of, known_at, version
        self.answered = 0  # requests this path answered (tests check it took them)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = self.path.fullmatch(_route_path(scope))
            if match is not None:
                # what the router sets for this path: the access log and metrics name the
                # route also when the read fails (the database away: a 503 from the edge)
                scope["route"] = self.route
                scope["path_params"] = {"customer_id": match[1]}
                request, customer_id = Request(scope), UUID(match[1])
                if scope["query_string"]:
                    answer = await self._travel(request, customer_id)
                else:
                    answer = await self._live(request, customer_id)
                if answer is not None:
                    self.answered += 1
                    await answer(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _live(self, request: Request, customer_id: UUID) -> Response | None:
        if not _counted(request):
            return None
        return await reads.live_in_loop(request, customer_id)

    async def _travel(self, request: Request, customer_id: UUID) -> Response | None:
        """The route's time-travel answer, or None (no view in time asked for, or one the
        route refuses, or not answered 200: the route answers it)."""
        values, errors = request_params_to_args(self.query, request.query_params)
        if errors:
            return None
        view = values["as_of"], values["known_at"], values["version"]
        try:
            if not reads.travels(*view):
                return None
        except DomainError:
            return None
        if not _counted(request):
            return None
        try:
            return await run_in_threadpool(reads.travel_response, request, customer_id, *view)
        except DomainError as error:  # no registration in the view: the app's own answer
            return domain_problem(error)  # (falling through would fold the history again)


def _counted(request: Request) -> bool:
    """Whether the request's key is admitted with the reader role and counted against its
    rate limit (else the route refuses it)."""
    key = admitted(request, Role.READER)
    return key is not None and counts(request, key)
