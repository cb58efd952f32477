"""Segment definitions and refreshes: the facts segment membership is decided from.

A :class:`Segment` is an aggregate whose id is derived from its public ``segment_id``, so each
segment is one stream of events: ``segment.defined`` (version 1), then ``segment.redefined``
for every change of name, rule or purpose (an unchanged definition records nothing). A
:class:`Refresh` (``segments.refreshed``) asks for time-relative and RFM rules to be decided
again at its ``occurred_at``; it is an aggregate of one event whose id is derived from that
instant, so the same refresh asked twice is recorded once.

Both live in the event store beside the customers, with a position in the notification log:
the segments read model decides membership from them in log order, never from a clock.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import InvalidInput
from domain.event_base import LoggedEvent, Meta
from domain.segment_rules import Rule, parse, parse_purpose
from domain.text_policy import Text, normalise_text
from domain.values import check_aware, normalise_currency

SEGMENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CAMPAIGN_SEGMENT_PREFIX = "campaign-"  # + a campaign id: the segment of its inline-rule audience
NAMESPACE = UUID("5d0c54f5-3a9e-5b86-9d55-0b2c0a6f3e41")


class ReservedSegmentId(InvalidInput):
    """A user named a segment id of the campaign namespace (``campaign-<uuid>``): those are
    the audiences of campaigns with an inline rule, defined by the campaign's launch only."""

    code = "reserved-segment-id"


def check_segment_id(segment_id: object) -> str:
    """A segment id (lower-case letters, digits, ``_`` and ``-``), or :class:`InvalidInput`."""
    if not isinstance(segment_id, str) or not SEGMENT_ID.match(segment_id):
        raise InvalidInput("segment_id", f"must match {SEGMENT_ID.pattern}")
    return segment_id


def check_user_segment_id(segment_id: object) -> str:
    """A segment id a user may define or change: :func:`check_segment_id`, and not in the
    campaign namespace (:class:`ReservedSegmentId`, naming ``segment_id``)."""
    checked_id = check_segment_id(segment_id)
    campaign_id = checked_id.removeprefix(CAMPAIGN_SEGMENT_PREFIX)
    if campaign_id != checked_id and _canonical_uuid(campaign_id):
        raise ReservedSegmentId(
            "segment_id",
            "campaign-<uuid> ids are reserved: they are the audiences of campaigns with an "
            "inline rule, defined by the campaign's launch",
        )
    return checked_id


def campaign_segment_id(campaign_id: UUID) -> str:
    """The id of the segment an inline-rule audience of ``campaign_id`` is defined as."""
    return f"{CAMPAIGN_SEGMENT_PREFIX}{campaign_id}"


def _canonical_uuid(text: str) -> bool:
    """Whether ``text`` is a UUID as :func:`campaign_segment_id` writes it (``str(UUID)``)."""
    try:
        return str(UUID(text)) == text
    except ValueError:
        return False


def checked(segment_id: object, name: object, rule: object, purpose: object) -> dict[str, Any]:
    """A definition's fields in normal form, or :class:`InvalidInput` naming the culprit
    (``segment_id``, ``name``, ``rule.…`` or ``purpose``)."""
    check_segment_id(segment_id)
    title = normalise_text("name", name, kind=Text.LINE, max_length=200)
    if title is None:
        raise InvalidInput("name", "is required")
    return {"name": title, "rule": parse(rule), "purpose": parse_purpose(purpose)}


class Segment(Aggregate):
    """A named rule over customer profiles, optionally gated by a consent purpose."""

    segment_id: str
    name: str
    rule: Rule
    purpose: str | None

    def __init__(self) -> None:
        """State is set by the events' ``apply``."""

    class Defined(LoggedEvent, Aggregate.Created):
        TYPE: ClassVar[str] = "segment.defined"
        segment_id: str
        name: str
        rule: Rule
        purpose: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.segment_id = self.segment_id
            aggregate.name, aggregate.rule, aggregate.purpose = self.name, self.rule, self.purpose

    class Redefined(LoggedEvent):
        TYPE: ClassVar[str] = "segment.redefined"
        segment_id: str
        name: str
        rule: Rule
        purpose: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.name, aggregate.rule, aggregate.purpose = self.name, self.rule, self.purpose

    @staticmethod
    def id_for(segment_id: str) -> UUID:
        """The aggregate id of a segment id (checked first)."""
        return uuid5(NAMESPACE, f"segment/{check_segment_id(segment_id)}")

    @classmethod
    def define(
        cls, segment_id: str, name: object, rule: object, purpose: object, meta: Meta
    ) -> Segment:
        """A new segment (every field validated, see :func:`checked`)."""
        fields = checked(segment_id, name, rule, purpose)
        return cls._create(
            cls.Defined,
            id=cls.id_for(segment_id),
            segment_id=segment_id,
            **fields,
            **meta.fields(),
        )

    def redefine(self, name: object, rule: object, purpose: object, meta: Meta) -> bool:
        """Change name, rule or purpose; False (and nothing recorded) if nothing changes."""
        fields = checked(self.segment_id, name, rule, purpose)
        if fields == {"name": self.name, "rule": self.rule, "purpose": self.purpose}:
            return False
        self.trigger_event(self.Redefined, segment_id=self.segment_id, **fields, **meta.fields())
        return True


class Refresh(Aggregate):
    """A request to decide time-relative and RFM segments again, as of its ``occurred_at``."""

    currency: str

    def __init__(self) -> None:
        """State is set by the event's ``apply``."""

    class Requested(LoggedEvent, Aggregate.Created):
        TYPE: ClassVar[str] = "segments.refreshed"
        currency: str  # RFM scores are computed over purchases in this currency

        def apply(self, aggregate: Any) -> None:
            aggregate.currency = self.currency

    @classmethod
    def request(cls, meta: Meta, currency: str = "EUR") -> Refresh:
        """A refresh at ``meta.occurred_at`` (its id: that instant and the currency)."""
        code = normalise_currency(currency)
        instant = check_aware("occurred_at", meta.occurred_at).astimezone(UTC).isoformat()
        return cls._create(
            cls.Requested,
            id=uuid5(NAMESPACE, f"refresh/{instant}/{code}"),
            currency=code,
            **meta.fields(),
        )


EVENT_CLASSES: tuple[type[LoggedEvent], ...] = (
    Segment.Defined,
    Segment.Redefined,
    Refresh.Requested,
)
EVENT_TYPES: dict[str, type[LoggedEvent]] = {cls.TYPE: cls for cls in EVENT_CLASSES}
