"""Duplicate review commands: dismiss a candidate pair (an event in the store).

A dismissal is recorded on the pair's own stream (:mod:`domain.duplicate_review`) with the
fingerprint of the records as listed; the duplicates read model keeps it and the list leaves
the pair out until a scan finds it with another fingerprint. Dismissing the same fingerprint
twice records nothing. A concurrent writer that commits first makes the store refuse our
event; the command is then retried against fresh state (bounded).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from commands import messages as m
from commands.service import Context, Outcome
from domain.duplicate_review import PairReview
from domain.errors import ConcurrentWrite
from domain.event_base import Meta
from domain.values import normalise_email, normalise_name, normalise_phone
from infra.store import EventStore


class DuplicateReviewService:
    """Records dismissals in ``store``; ``on_commit(position)`` is called after each write."""

    def __init__(
        self, store: EventStore, *, retries: int = 5, on_commit: Callable[[int], None] | None = None
    ) -> None:
        self.store = store
        self.retries = retries
        self.on_commit = on_commit

    def dismiss(self, pair_id: str, fingerprint: str, context: Context) -> int:
        """Dismiss ``pair_id`` as listed with ``fingerprint``; returns the position of the
        dismissal (of the earlier one when this fingerprint was dismissed before)."""
        aggregate_id = PairReview.id_for(pair_id)
        meta = Meta(context.actor, context.correlation_id, context.causation_id, datetime.now(UTC))
        for _ in range(self.retries + 1):
            try:
                review: Any = self.store.repository.get(aggregate_id)
            except AggregateNotFoundError:
                review = PairReview.dismiss_new(pair_id, fingerprint, meta)
            else:
                if not review.dismiss(fingerprint, meta):
                    position = self.store.position_of(aggregate_id, review.version)
                    assert position is not None
                    return int(position)
            try:
                recordings = self.store.save(review)
            except IntegrityError:
                continue
            position = max(r.notification.id for r in recordings)
            if self.on_commit is not None:
                self.on_commit(position)
            return int(position)
        raise ConcurrentWrite(f"gave up after {self.retries + 1} conflicting attempts")


def registered_profile(command: m.Command, outcome: Outcome, region: str) -> dict[str, Any] | None:
    """The profile a registration recorded (name, email, phone in their stored form,
    attributes, external ids), or None when ``command`` recorded no new customer."""
    if not isinstance(command, m.RegisterCustomer) or not outcome.events:
        return None
    return {
        "name": normalise_name(command.name),
        "email": normalise_email(command.email) if command.email else None,
        "phone": normalise_phone(command.phone, region) if command.phone else None,
        "attributes": command.attributes,
        "external_ids": command.external_ids,
    }


def new_customers(
    commands: list[m.Command], outcomes: list[Outcome], region: str
) -> dict[int, tuple[str, dict[str, Any]]]:
    """``{index: (customer_id, profile)}`` of the commands that registered a new customer."""
    new = {}
    for index, (command, outcome) in enumerate(zip(commands, outcomes, strict=True)):
        profile = registered_profile(command, outcome, region)
        if profile is not None and outcome.customer_id is not None:
            new[index] = (str(outcome.customer_id), profile)
    return new
