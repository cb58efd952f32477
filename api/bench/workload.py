"""The commands the benchmarks send: registrations, then a mix of everyday commands."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID, uuid4

from commands import messages as m
from commands.service import CommandService, Context

CONTEXT = Context(actor="bench")
BATCH = 500


def registrations(count: int, rng: random.Random) -> list[m.Command]:
    """``count`` new customers with ids chosen up front (so later commands can target them)."""
    return [
        m.RegisterCustomer(
            customer_id=UUID(int=rng.getrandbits(128), version=4),
            name=f"Customer {i}",
            email=f"c{i}-{rng.getrandbits(32):x}@bench.example",
            attributes={"tier": rng.choice(["bronze", "silver", "gold"])},
            source="bench",
            lifecycle_stage=rng.choice(["prospect", "new", "active"]),
        )
        for i in range(count)
    ]


def everyday(customer_id: UUID, rng: random.Random) -> m.Command:
    """One contact, tag or purchase for ``customer_id`` (roughly 40/30/30)."""
    draw = rng.random()
    if draw < 0.4:
        return m.RecordContact(
            customer_id=customer_id, channel="email", direction="inbound", subject="bench"
        )
    if draw < 0.7:
        return m.TagCustomer(customer_id=customer_id, tag=f"t{rng.randint(0, 30)}")
    return m.RecordPurchase(
        customer_id=customer_id,
        order_id=uuid4().hex,
        amount=f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}",
        currency="EUR",
    )


def contacts(customer_id: UUID, count: int) -> list[m.Command]:
    """``count`` contacts with one customer: each is exactly one event."""
    return [
        m.RecordContact(customer_id=customer_id, channel="phone", direction="outbound")
        for _ in range(count)
    ]


def mix(ids: list[UUID], count: int, rng: random.Random) -> list[m.Command]:
    """``count`` everyday commands spread over ``ids``."""
    return [everyday(rng.choice(ids), rng) for _ in range(count)]


def as_json(command: m.Command) -> dict[str, Any]:
    """The ``POST /v1/commands:batch`` item for ``command``."""
    doc: dict[str, Any] = {"type": command.NAME, "customer_id": str(command.customer_id)}
    if isinstance(command, m.RecordContact):
        doc |= {"channel": command.channel, "direction": command.direction}
    elif isinstance(command, m.TagCustomer):
        doc["tag"] = command.tag
    elif isinstance(command, m.RecordPurchase):
        doc |= {"order_id": command.order_id, "amount": str(command.amount), "currency": "EUR"}
    else:
        raise TypeError(f"no JSON form for {command.NAME}")
    return doc


def chunks(commands: list[m.Command], size: int = BATCH) -> Iterator[list[m.Command]]:
    for start in range(0, len(commands), size):
        yield commands[start : start + size]


def run_batches(
    service: CommandService,
    commands: list[m.Command],
    size: int = BATCH,
    progress: Callable[[int], None] = lambda _n: None,
) -> int:
    """Execute ``commands`` through the group-commit path; returns how many were accepted."""
    accepted = 0
    for chunk in chunks(commands, size):
        outcomes = service.execute_batch(chunk, CONTEXT)
        accepted += sum(o.status == "accepted" for o in outcomes)
        progress(len(chunk))
    return accepted


def seed(
    service: CommandService,
    customers: int,
    events: int,
    rng: random.Random,
    progress: Callable[[int], None] = lambda _n: None,
) -> list[UUID]:
    """Register ``customers`` and add everyday commands until about ``events`` commands ran."""
    registered = registrations(customers, rng)
    run_batches(service, registered, progress=progress)
    ids = [c.customer_id for c in registered if c.customer_id is not None]
    remaining = max(0, events - customers)
    while remaining:
        step = min(remaining, 20 * BATCH)
        run_batches(service, mix(ids, step, rng), progress=progress)
        remaining -= step
    return ids
