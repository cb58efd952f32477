"""Decisions on duplicate candidates: a pair dismissed as "not the same person".

A :class:`PairReview` is an aggregate whose id is derived from the pair id (see
:func:`domain.duplicates.detect.pair_id`), so each pair is one stream: ``duplicates.dismissed``
(version 1), then ``duplicates.dismissed_again`` for each later dismissal. Every dismissal
records the fingerprint of both records as they were shown; the pair is listed again only
once a scan finds it with another fingerprint (one of the records changed). Merging a pair is
the customer merge itself (``customer.merged_into`` / ``customer.duplicate_absorbed``).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import InvalidInput
from domain.event_base import LoggedEvent, Meta

NAMESPACE = UUID("0b9ad2a6-5f0e-5b0e-9a53-0e3f7c7e2d20")
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
PAIR_ID = re.compile(f"^({_UUID})~({_UUID})$")


def parse_pair_id(value: object) -> tuple[str, str]:
    """The two customer ids of a pair id ``"<lower uuid>~<higher uuid>"``, or InvalidInput."""
    match = PAIR_ID.match(value) if isinstance(value, str) else None
    if match is None or match.group(1) >= match.group(2):
        raise InvalidInput("pair", "must be two customer ids, lower first, joined by '~'")
    return match.group(1), match.group(2)


class PairReview(Aggregate):
    """What people decided about one pair of customers."""

    pair_id: str
    fingerprint: str

    def __init__(self) -> None:
        """State is set by the events' ``apply``."""

    class Dismissed(LoggedEvent, Aggregate.Created):
        TYPE: ClassVar[str] = "duplicates.dismissed"
        pair_id: str
        fingerprint: str

        def apply(self, aggregate: Any) -> None:
            aggregate.pair_id, aggregate.fingerprint = self.pair_id, self.fingerprint

    class DismissedAgain(LoggedEvent):
        TYPE: ClassVar[str] = "duplicates.dismissed_again"
        pair_id: str
        fingerprint: str

        def apply(self, aggregate: Any) -> None:
            aggregate.fingerprint = self.fingerprint

    @staticmethod
    def id_for(pair_id: str) -> UUID:
        parse_pair_id(pair_id)
        return uuid5(NAMESPACE, f"duplicate-pair/{pair_id}")

    @classmethod
    def dismiss_new(cls, pair_id: str, fingerprint: str, meta: Meta) -> PairReview:
        return cls._create(
            cls.Dismissed,
            id=cls.id_for(pair_id),
            pair_id=pair_id,
            fingerprint=fingerprint,
            **meta.fields(),
        )

    def dismiss(self, fingerprint: str, meta: Meta) -> bool:
        """Dismiss again; False (nothing recorded) if this very fingerprint was dismissed."""
        if fingerprint == self.fingerprint:
            return False
        self.trigger_event(
            self.DismissedAgain, pair_id=self.pair_id, fingerprint=fingerprint, **meta.fields()
        )
        return True


EVENT_CLASSES: tuple[type[LoggedEvent], ...] = (PairReview.Dismissed, PairReview.DismissedAgain)
EVENT_TYPES: dict[str, type[LoggedEvent]] = {cls.TYPE: cls for cls in EVENT_CLASSES}
