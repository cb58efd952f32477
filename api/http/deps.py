"""Request-scoped helpers shared by the routers: services, context, read-your-writes."""

from __future__ import annotations

import time
from uuid import UUID, uuid4

from fastapi import Request

from api.bootstrap import Services
from api.status import held_customers, only_held_between
from commands.service import Context
from domain.errors import InvalidInput
from projections.framework import positions
from projections.parking import Parked

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
    result: Services = request.app.state.services
    return result


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
    while True:
        at = positions(svc.read_store)
        behind = [n for n in names if not _reached(svc, n, at.get(n, 0), wanted)]
        if not behind:
            return
        if time.monotonic() >= deadline:
            reached = min(at.get(n, 0) for n in behind)
            if _only_held_behind(svc, behind, reached, wanted):
                return
            raise NotCaughtUp(wanted, reached)
        if svc.runner is not None:
            svc.runner.wake()
        time.sleep(0.01)


def _reached(svc: Services, name: str, position: int, wanted: int) -> bool:
    """Whether projection ``name`` at ``position`` has everything it is fed up to ``wanted``.

    A projection fed from ``customer.events`` never sees segment events (their positions come
    from segment writes): it has reached a recorded ``wanted`` once no customer event lies in
    between.
    """
    if position >= wanted:
        return True
    if any(p.log_order for p in svc.projectors if p.name == name) or wanted > svc.store.head():
        return False
    following = svc.store.customer_notifications(position, 1)
    return not following or following[0].id > wanted


def _only_held_behind(svc: Services, behind: list[str], reached: int, wanted: int) -> bool:
    """Whether the projections ``behind`` stopped short of ``wanted`` only for parked customers.

    Those fed in log order (``Projector.log_order``) pass parked customers' events like any
    other: if one of them is behind, it is only behind.
    """
    if any(p.log_order for p in svc.projectors if p.name in behind):
        return False
    return only_held_between(svc, behind, reached, wanted)
