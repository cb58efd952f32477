"""A backlog for the read models: many events written while no runner feeds them."""

from __future__ import annotations

from commands import messages as m
from commands.service import CommandService, Context, Outcome

BATCH = 500


def write_backlog(commands: CommandService, customers: int, contacts_each: int) -> int:
    """Register ``customers`` (no email: one event each) and record ``contacts_each`` contacts
    with each (one event each), in batches; returns how many customer events were stored."""
    registrations: list[m.Command] = [
        m.RegisterCustomer(name=f"Backlog {i}") for i in range(customers)
    ]
    ids = [o.customer_id for o in _run(commands, registrations)]
    contacts: list[m.Command] = [
        m.RecordContact(customer_id=customer, channel="phone", direction="outbound")
        for _ in range(contacts_each)
        for customer in ids
    ]
    _run(commands, contacts)
    return len(registrations) + len(contacts)


def _run(commands: CommandService, todo: list[m.Command]) -> list[Outcome]:
    done = []
    for start in range(0, len(todo), BATCH):
        outcomes = commands.execute_batch(todo[start : start + BATCH], Context(actor="backlog"))
        assert all(o.status == "accepted" and len(o.events) == 1 for o in outcomes), outcomes[0]
        done += outcomes
    return done
