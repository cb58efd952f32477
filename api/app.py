"""The HTTP API (FastAPI). Errors are problem+json; bodies are encoded with orjson."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.responses import ORJSONResponse

from api import problems
from api.bootstrap import Services, build
from api.schemas import BatchRequest, BatchResult, RegisterCustomerRequest, WriteResult
from commands import messages as m
from commands.service import Context, Outcome
from domain.errors import CustomerNotFound, DomainError, InvalidInput
from infra.envelope import Envelope
from infra.logging import bind_correlation
from projections import profile


def _context(request: Request, actor: str = "anonymous") -> Context:
    correlation_id = request.headers.get("x-correlation-id") or str(uuid4())
    bind_correlation(correlation_id, path=request.url.path)
    return Context(actor=actor, correlation_id=correlation_id)


def _written(outcome: Outcome, response: Response) -> WriteResult:
    response.headers["ETag"] = f'"{outcome.version}"'
    return WriteResult(
        customer_id=str(outcome.customer_id),
        version=outcome.version or 0,
        position=outcome.position,
    )


def create_app(services: Services | None = None) -> FastAPI:
    """Build the ASGI app; ``services`` default to the configured ones."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = services or build()
        yield
        app.state.services.close()

    app = FastAPI(
        title="clientele",
        version="0.1.0",
        default_response_class=ORJSONResponse,
        lifespan=lifespan,
    )
    problems.install(app)

    def svc(request: Request) -> Services:
        result: Services = request.app.state.services
        return result

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/customers", status_code=201, response_model=WriteResult, tags=["write"])
    def register_customer(
        body: RegisterCustomerRequest,
        request: Request,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> WriteResult:
        command = m.RegisterCustomer(**body.model_dump(), idempotency_key=idempotency_key)
        outcome = svc(request).commands.execute(command, _context(request))
        response.headers["Location"] = f"/v1/customers/{outcome.customer_id}"
        return _written(outcome, response)

    @app.post("/v1/commands:batch", response_model=BatchResult, tags=["write"])
    def batch(body: BatchRequest, request: Request) -> BatchResult:
        parsed: list[m.Command | DomainError] = []
        for doc in body.commands:
            try:
                parsed.append(m.parse_command(doc))
            except DomainError as error:
                parsed.append(error)
        valid = [c for c in parsed if isinstance(c, m.Command)]
        outcomes = iter(svc(request).commands.execute_batch(valid, _context(request)))
        results = [
            {"status": "rejected", "problem": p.to_dict()}
            if isinstance(p, DomainError)
            else next(outcomes).to_dict()
            for p in parsed
        ]
        return BatchResult(results=results)

    @app.get("/v1/customers/{customer_id}", tags=["read"])
    def get_customer(
        customer_id: UUID,
        request: Request,
        response: Response,
        as_of: Annotated[
            datetime | None, Query(description="time travel: what we knew then")
        ] = None,
        version: Annotated[int | None, Query(ge=1, description="time travel to a version")] = None,
    ) -> dict[str, Any]:
        if as_of is not None and as_of.tzinfo is None:
            raise InvalidInput("as_of", "must include a time zone offset")
        state = profile.empty(customer_id)
        for position, event in svc(request).store.history(customer_id):
            if (version is not None and event.originator_version > version) or (
                as_of is not None and event.timestamp > as_of
            ):
                break
            profile.apply(state, Envelope.from_event(event, position))
        if state["version"] == 0:
            raise CustomerNotFound(customer_id)
        response.headers["ETag"] = f'"{state["version"]}"'
        return profile.render(state)

    return app
