"""What every logged event carries, customers' and segments' alike.

Every event carries who caused it (``actor``), the ``correlation_id`` of the request that led
to it, the ``causation_id`` of the message that directly caused it, and ``occurred_at`` (business
time, given by the caller or now). eventsourcing adds ``timestamp`` (when it was recorded).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate

META_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic"}
    | {"actor", "correlation_id", "causation_id", "occurred_at"}
)
MAX_EVENT_BYTES = 512 * 1024
"""Upper bound of one event's stored form (transcoded state, personal fields sealed): the
store refuses to record a bigger event (:class:`domain.errors.EventTooLarge`). Its envelope is
at most ``MAX_EVENT_BYTES + ENVELOPE_OVERHEAD_BYTES`` (README, "Event envelope")."""
ENVELOPE_OVERHEAD_BYTES = 1024


@dataclass(frozen=True)
class Meta:
    """Who, why and when for the events one command produces."""

    actor: str
    correlation_id: str
    causation_id: str | None
    occurred_at: datetime

    def fields(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "occurred_at": self.occurred_at,
        }


class LoggedEvent(Aggregate.Event):
    """Base of every event read models are fed (customers', segments'): a dotted ``TYPE``,
    who caused it, why and when."""

    TYPE: ClassVar[str] = ""
    actor: str
    correlation_id: str
    causation_id: str | None
    occurred_at: datetime

    def data(self) -> dict[str, Any]:
        """The event-specific fields (the envelope's ``data``)."""
        return {k: v for k, v in vars(self).items() if k not in META_FIELDS}


def data_fields(event_class: type[LoggedEvent]) -> list[str]:
    """Names of an event class's ``data`` fields, in declaration order."""
    return [f.name for f in dataclasses.fields(event_class) if f.name not in META_FIELDS]
