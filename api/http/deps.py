"""Request-scoped helpers shared by the routers: services, context, read-your-writes."""

from __future__ import annotations

import time
from uuid import UUID, uuid4

from fastapi import Request

from api.http.startup import Startup
from bootstrap import Services
from commands.service import Context
from consumers.status import behind, customer_behind, held_customers, only_held_behind
from domain.errors import InvalidInput
from infra.async_reads import AsyncReads
from infra.parking import Parked

MAX_WAIT_SECONDS = 2.0


class NotCaughtUp(Exception):
    """The read models have not reached the position the client asked for."""

    def __init__(self, wanted: int, reached: int) -> None:
        super().__init__(f"read models are at position {reached}, not yet {wanted}")
        self.wanted = wanted
        self.reached = reached


class CustomerParked(Exception):
    """The customer asked for is held back (``stage``: the relay or a projection) at an
    event at or before the position the client waits for: its read model is behind."""

    def __init__(self, customer_id: str, stage: str, parked: Parked) -> None:
        super().__init__(
            f"customer {customer_id} is held back by {stage} at version {parked.version} "
            f"(position {parked.position}) since {parked.parked_at}: {parked.reason}"
        )
        self.customer_id = customer_id
        self.stage = stage
        self.parked = parked


def services(request: Request) -> Services:
    """The app's services; :class:`infra.resilience.Waiting` (a 503) while ``serve`` still
    waits for its database to open them (:mod:`api.http.startup`)."""
    startup: Startup | None = getattr(request.app.state, "startup", None)
    if startup is not None:
        return startup.services()
    result: Services = request.app.state.services
    return result


def async_reads(request: Request) -> AsyncReads | None:
    """The app's asynchronous read pool (:mod:`infra.async_reads`) when its read models are
    on PostgreSQL, else None; made by the first call, closed with the app (``create_app``)."""
    svc = services(request)
    if svc.read_store.dialect != "postgres":
        return None
    reads: AsyncReads | None = getattr(request.app.state, "async_reads", None)
    if reads is None:
        settings = svc.settings
        reads = AsyncReads(
            settings.read_models_url,
            settings.pool_size,
            timeout=settings.database_timeout_seconds,
        )
        request.app.state.async_reads = reads
    return reads


def actor(request: Request) -> str:
    """The authenticated caller's name (set by the auth layer), recorded on every event."""
    return str(getattr(request.state, "actor", "anonymous"))


def context(request: Request, actor: str = "anonymous") -> Context:
    """Who is asking, and the correlation id (``X-Correlation-Id``, else the request id),
    which the events of this request will carry."""
    correlation_id = getattr(request.state, "correlation_id", None) or str(uuid4())
    return Context(actor=actor, correlation_id=correlation_id)


def wait_for_position(request: Request, names: list[str], customer_id: UUID | None = None) -> None:
    """Read-your-writes: honour ``X-Min-Position`` (bounded wait, else :class:`NotCaughtUp`).

    A parked customer never makes everybody wait: positions up to which only parked
    customers' events are missing count as reached. Reading a parked customer itself
    (``customer_id``) at or past its held event raises :class:`CustomerParked` at once.
    Reading one customer also waits until its own events up to the position are applied
    (:func:`~consumers.status.customer_behind`): with several Kafka partitions a read
    model's position can pass one of them still unread.
    """
    raw = request.headers.get("x-min-position")
    if raw is None:
        return
    try:
        wanted = int(raw)
    except ValueError:
        raise InvalidInput("X-Min-Position", "must be an integer position") from None
    svc = services(request)
    if customer_id is not None:
        held = held_customers(svc, names, str(customer_id)).get(str(customer_id))
        if held is not None and held[1].position <= wanted:
            raise CustomerParked(str(customer_id), *held)
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    needed: int | None = None  # the customer's version at ``wanted``, asked once
    while True:
        short = behind(svc, names, wanted)
        if short and time.monotonic() >= deadline:
            reached = min(short.values())
            if not only_held_behind(svc, short, reached, wanted):
                raise NotCaughtUp(wanted, reached)
            short = {}
        if not short:
            if customer_id is None:
                return
            if needed is None:
                needed = svc.store.version_at(customer_id, wanted)
            lagging = customer_behind(svc, names, str(customer_id), needed)
            if not lagging:
                return
            if time.monotonic() >= deadline:
                held = held_customers(svc, names, str(customer_id)).get(str(customer_id))
                if held is not None:  # parked while we waited (or at a gap past its event)
                    raise CustomerParked(str(customer_id), *held)
                oldest = svc.store.position_of(customer_id, min(lagging.values()) + 1)
                raise NotCaughtUp(wanted, (oldest or 1) - 1)  # just before the oldest missing
        if svc.runner is not None:
            svc.runner.wake()
        time.sleep(0.01)
