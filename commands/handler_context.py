"""What every command handler works with: its environment (unit of work, the store's now,
business time and its bounds), the customer a command addresses, and short codes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from commands import messages as m
from commands.external_ids import resolve_ref
from commands.unit_of_work import UnitOfWork
from domain import text_policy as tp
from domain import values as v
from domain.customer import Customer
from domain.errors import InvalidInput, VersionConflict
from domain.event_base import Meta
from domain.merging import PURCHASES_PER_PART

MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_CODE_LENGTH = 1000
DEFAULT_BUSINESS_TIME_FLOOR = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Env:
    """What a handler needs besides the unit of work: ``meta`` at the store's now, and the
    earliest business time accepted (``CLIENTELE_BUSINESS_TIME_FLOOR``)."""

    uow: UnitOfWork
    meta: Meta
    default_region: str
    floor: datetime = DEFAULT_BUSINESS_TIME_FLOOR
    merge_part_size: int = PURCHASES_PER_PART

    def business_time(self, occurred_at: datetime | None) -> datetime | None:
        """The caller's business time in UTC, or None (now): at most :data:`MAX_CLOCK_SKEW`
        ahead of the store's clock, and not before the floor."""
        if occurred_at is None:
            return None
        when = v.parse_timestamp("occurred_at", occurred_at)
        if when > self.meta.occurred_at + MAX_CLOCK_SKEW:
            raise InvalidInput("occurred_at", "is in the future (beyond 5 minutes of clock skew)")
        if when < self.floor:
            raise InvalidInput(
                "occurred_at",
                f"is before {self.floor.isoformat()}, the earliest business time accepted "
                "(CLIENTELE_BUSINESS_TIME_FLOOR)",
            )
        return when

    def at(self, when: datetime | None, *customers: Customer) -> Meta:
        """Meta for events at business time ``when``; without one, now — or the latest
        registration of ``customers`` if one was dated ahead of the store's clock (within the
        skew), since no event may precede its customer's registration."""
        if when is None:
            when = max([self.meta.occurred_at, *(c.registered_at for c in customers)])
        if when is self.meta.occurred_at:  # the usual case: the meta itself (it is frozen)
            return self.meta
        return replace(self.meta, occurred_at=when)


def addressed(command: m.Command, env: Env) -> tuple[Customer, Meta]:
    """The addressed customer (expected version checked, if given) and the meta of the events
    the command records on it."""
    when = env.business_time(command.occurred_at)
    if command.customer_ref is not None:
        if command.customer_id is not None:
            raise InvalidInput("customer_ref", "give customer_id or customer_ref, not both")
        customer = resolve_ref(env.uow, command.customer_ref)
    elif command.customer_id is None:
        raise InvalidInput("customer_id", "is required (or customer_ref)")
    else:
        customer = env.uow.customer(command.customer_id)
    if command.expected_version is not None and command.expected_version != customer.version:
        raise VersionConflict(customer.id, command.expected_version, customer.version)
    return customer, env.at(when, customer)


def code(field: str, value: object, max_length: int = MAX_CODE_LENGTH) -> str | None:
    """An optional short code (sources, reasons): identifier text, stored in the clear."""
    return tp.normalise_text(field, value, kind=tp.Text.IDENTIFIER, max_length=max_length)


def optional(value: Any, normalise: Callable[[Any], str]) -> str | None:
    """``normalise(value)`` (its canonical text), or None when ``value`` is None or text that
    is empty once surrounding spaces are trimmed (:func:`domain.text_policy.trim`); raises
    what ``normalise`` raises for a value it refuses."""
    if value is None or (isinstance(value, str) and not tp.trim(value)):
        return None
    return normalise(value)
