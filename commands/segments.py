"""Segment commands: define (or change) a segment, and ask for a refresh — events in the store.

Users define segments through :meth:`SegmentService.define` (HTTP ``PUT|POST
/v1/segments/{id}``), which refuses the campaign namespace (``campaign-<uuid>``,
:class:`domain.segment.ReservedSegmentId`); those segments are the inline-rule audiences of
campaigns, defined by the launcher alone through :meth:`SegmentService.define_audience`.
The upgrade from segments schema 1 records the definitions it finds, whatever their id, through
:meth:`SegmentService.record_legacy` (schema 1 had no reserved namespace).

Definitions and refreshes are recorded like customer events, with a position in the
notification log, so the segments read model is decided from the log alone (see
:mod:`domain.segment`). A concurrent writer that commits first makes the store refuse our
event; the command is then retried against fresh state (bounded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from commands.service import Context
from domain.errors import ConcurrentWrite
from domain.event_base import Meta
from domain.segment import Refresh, Segment, campaign_segment_id, check_user_segment_id
from domain.values import check_aware, utc_text
from infra.store import EventStore


@dataclass(frozen=True)
class Defined:
    """A segment after a define command, and the position of its newest event."""

    segment_id: str
    name: str
    rule: dict[str, Any]
    purpose: str | None
    version: int
    created_at: str
    updated_at: str
    position: int

    def view(self) -> dict[str, Any]:
        """The public shape of ``GET /v1/segments`` items, plus ``position``."""
        return asdict(self)


class SegmentService:
    """Records segment definitions and refreshes in ``store``; ``on_commit(position)`` is
    called after each write (the embedded runner wakes up)."""

    def __init__(
        self,
        store: EventStore,
        *,
        retries: int = 5,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.retries = retries
        self.on_commit = on_commit

    def define(
        self, segment_id: str, name: object, rule: object, purpose: object, context: Context
    ) -> Defined:
        """Create or change a user's segment (validated: :class:`domain.errors.InvalidInput`
        names the field; an id of the campaign namespace is refused with
        :class:`domain.segment.ReservedSegmentId`); an unchanged definition records nothing
        (PUT is idempotent)."""
        return self._define(check_user_segment_id(segment_id), name, rule, purpose, context)

    def define_audience(self, campaign_id: UUID, rule: object, context: Context) -> Defined:
        """Create the segment ``campaign-<campaign_id>`` of a campaign's inline-rule audience
        (for the launcher only: no user surface reaches it); an unchanged definition records
        nothing."""
        name = f"Audience of campaign {campaign_id}"
        return self._define(campaign_segment_id(campaign_id), name, rule, None, context)

    def record_legacy(
        self, segment_id: str, name: object, rule: object, purpose: object, context: Context
    ) -> Defined:
        """Record a definition kept by segments schema 1 (for ``clientele migrate`` only):
        any valid id, the campaign namespace included (schema 1 had none reserved; an id that
        is no segment id is :class:`domain.errors.InvalidInput`); idempotent as :meth:`define`."""
        return self._define(segment_id, name, rule, purpose, context)

    def _define(
        self, segment_id: str, name: object, rule: object, purpose: object, context: Context
    ) -> Defined:
        aggregate_id = Segment.id_for(segment_id)
        for _ in range(self.retries + 1):
            try:
                found: Any = self.store.repository.get(aggregate_id)
            except AggregateNotFoundError:
                found = None
            meta = _meta(context, datetime.now(UTC))
            if found is None:
                found = Segment.define(segment_id, name, rule, purpose, meta)
            elif not found.redefine(name, rule, purpose, meta):
                position = self.store.position_of(aggregate_id, found.version)
                assert position is not None
                return _defined(found, position)
            position = self._save(found)
            if position is not None:
                return _defined(found, position)
        raise ConcurrentWrite(f"gave up after {self.retries + 1} conflicting attempts")

    def refresh(self, at: datetime, context: Context, currency: str = "EUR") -> int:
        """Ask for time-relative and RFM segments to be decided again as of ``at``; returns the
        refresh's position (the same one when that instant was asked for before)."""
        meta = _meta(context, check_aware("at", at))
        requested = Refresh.request(meta, currency)
        position = self._save(requested)
        if position is None:  # recorded before: same instant, same id
            position = self.store.position_of(requested.id, 1)
        assert position is not None
        return position

    def _save(self, aggregate: Aggregate) -> int | None:
        """Position of the newest event saved, or None if another writer got there first."""
        try:
            recordings = self.store.save(aggregate)
        except IntegrityError:
            return None
        position = max(r.notification.id for r in recordings)
        if self.on_commit is not None:
            self.on_commit(position)
        return position


def _meta(context: Context, occurred_at: datetime) -> Meta:
    return Meta(context.actor, context.correlation_id, context.causation_id, occurred_at)


def _defined(segment: Segment, position: int) -> Defined:
    return Defined(
        segment.segment_id,
        segment.name,
        segment.rule,
        segment.purpose,
        segment.version,
        utc_text(segment.created_on),
        utc_text(segment.modified_on),
        position,
    )
