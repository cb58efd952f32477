"""Campaign commands: create, edit, schedule, cancel, complete a campaign (events in the store,
see :mod:`domain.campaign`), and the internal customer command that targets one customer
(:class:`TargetForCampaign`, sent by the launcher, never accepted from outside: it is not in
:data:`commands.messages.COMMAND_TYPES`). A concurrent writer that commits first makes the
store refuse our events; the step is then retried against fresh state (bounded)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from commands import messages as m
from commands.handler_context import Env, addressed
from commands.handlers import handles
from commands.service import Context
from domain.campaign import CONTROL, TREATMENT, Campaign, Channel
from domain.campaign_directory import CampaignDirectory
from domain.errors import ConcurrentWrite, DomainError, InvalidInput
from domain.event_base import Meta
from domain.values import ConsentPurpose, parse_enum
from infra.store import EventStore


class CampaignNotFound(DomainError):
    code = "not-found"


class CampaignExists(DomainError):
    """A create named a ``campaign_id`` that is already a campaign's."""

    code = "campaign-exists"


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``max_touches`` treatment touches per customer in any ``window_days``, across
    campaigns (``CLIENTELE_CAMPAIGN_MAX_TOUCHES`` / ``CLIENTELE_CAMPAIGN_CAP_WINDOW_DAYS``)."""

    max_touches: int = 3
    window_days: int = 30

    def view(self) -> dict[str, int]:
        return {"max_touches": self.max_touches, "window_days": self.window_days}


@dataclass(frozen=True, kw_only=True)
class TargetForCampaign(m.Command):
    """Put one customer in a campaign's ``group`` (internal: the launcher sends it)."""

    NAME = "campaign_target"
    campaign_id: str
    group: str
    purpose: str
    channel: str
    max_touches: int
    window_days: int
    rfm_group: str | None = None


@handles(TargetForCampaign)
def target(command: TargetForCampaign, env: Env) -> UUID:
    if command.group not in (TREATMENT, CONTROL):
        raise InvalidInput("group", f"must be {TREATMENT} or {CONTROL}")
    purpose = parse_enum(ConsentPurpose, "purpose", command.purpose)
    channel = parse_enum(Channel, "channel", command.channel)
    customer, meta = addressed(command, env)
    customer.target(
        meta,
        campaign_id=command.campaign_id,
        group=command.group,
        purpose=purpose.value,
        channel=channel.value,
        cap=(command.max_touches, timedelta(days=command.window_days)),
        rfm_group=command.rfm_group,
    )
    return customer.id


class CampaignService:
    """Records campaign events in ``store``; campaigns are read back from the store."""

    def __init__(self, store: EventStore, *, retries: int = 5) -> None:
        self.store = store
        self.retries = retries

    def get(self, campaign_id: UUID) -> Campaign:
        """The campaign, or :class:`CampaignNotFound`."""
        try:
            found: Any = self.store.repository.get(campaign_id)
        except AggregateNotFoundError:
            found = None
        if not isinstance(found, Campaign):
            raise CampaignNotFound(f"no campaign {campaign_id}", campaign_id=str(campaign_id))
        return found

    def _exists(self, campaign_id: UUID) -> bool:
        try:
            self.store.repository.get(campaign_id)
        except AggregateNotFoundError:
            return False
        return True

    def list(self) -> list[Campaign]:
        """Every campaign, newest first."""
        try:
            directory: Any = self.store.repository.get(CampaignDirectory.ID)
        except AggregateNotFoundError:
            return []
        return [self.get(UUID(i)) for i in reversed(directory.campaign_ids)]

    def create(
        self,
        document: object,
        context: Context,
        *,
        assignment_key: str | None = None,
        campaign_id: UUID | None = None,
    ) -> tuple[Campaign, int]:
        """A new draft campaign (:func:`domain.campaign.parse_spec` checks ``document``) and
        the position of its event (``assignment_key``, ``campaign_id``: :meth:`Campaign.create`).
        A given ``campaign_id`` that is already a campaign's is :class:`CampaignExists` (never
        retried); a conflict on the campaign directory alone is retried (bounded)."""
        for _ in range(self.retries + 1):
            meta = _meta(context)
            campaign = Campaign.create(document, meta, assignment_key, campaign_id)
            try:
                directory: Any = self.store.repository.get(CampaignDirectory.ID)
            except AggregateNotFoundError:
                directory = CampaignDirectory.open(meta)
            directory.add(campaign.id, meta)
            try:
                recordings = self.store.save(campaign, directory)
            except IntegrityError:
                if campaign_id is not None and self._exists(campaign_id):
                    raise CampaignExists(
                        f"campaign {campaign_id} exists", campaign_id=str(campaign_id)
                    ) from None
                continue
            return campaign, max(r.notification.id for r in recordings)
        raise ConcurrentWrite(f"gave up after {self.retries + 1} conflicting attempts")

    def change(
        self,
        campaign_id: UUID,
        context: Context,
        step: Callable[[Campaign, Meta], object],
        *,
        expected_version: int | None = None,
    ) -> tuple[Campaign, int]:
        """Apply ``step`` to the campaign and save its events; the campaign and the position
        of its newest event. ``expected_version`` guards against lost updates."""
        for _ in range(self.retries + 1):
            campaign = self.get(campaign_id)
            if expected_version is not None and expected_version != campaign.version:
                raise CampaignVersionConflict(campaign_id, expected_version, campaign.version)
            step(campaign, _meta(context))
            if not campaign.pending_events:
                position = self.store.position_of(campaign.id, campaign.version)
                assert position is not None
                return campaign, position
            try:
                recordings = self.store.save(campaign)
            except IntegrityError:
                continue
            return campaign, max(r.notification.id for r in recordings)
        raise ConcurrentWrite(f"gave up after {self.retries + 1} conflicting attempts")


class CampaignVersionConflict(DomainError):
    """The expected version (If-Match) is not the campaign's current one."""

    code = "version-conflict"

    def __init__(self, campaign_id: UUID, expected: int, actual: int) -> None:
        super().__init__(
            f"campaign {campaign_id} is at version {actual}, not {expected}",
            campaign_id=str(campaign_id),
            expected_version=expected,
            actual_version=actual,
        )


def _meta(context: Context) -> Meta:
    return Meta(context.actor, context.correlation_id, context.causation_id, datetime.now(UTC))
