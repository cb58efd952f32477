"""The directory of campaigns: their ids in creation order, one stream (campaigns are listed
from it, with no read model), saved in the same transaction as each new campaign."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.event_base import LoggedEvent, Meta


class CampaignDirectory(Aggregate):
    """The ids of every campaign, in creation order (one stream: campaigns are listed from
    it, with no read model). Saved in the same transaction as each new campaign."""

    ID: ClassVar[UUID] = UUID("5d0c1a52-9f0e-4b8e-9a57-6c2b8f1e3a40")
    campaign_ids: list[str]

    def __init__(self) -> None:
        """State is set by the events' ``apply``."""

    class Opened(LoggedEvent, Aggregate.Created):
        TYPE: ClassVar[str] = "campaign_directory.opened"

        def apply(self, aggregate: Any) -> None:
            aggregate.campaign_ids = []

    class Added(LoggedEvent):
        TYPE: ClassVar[str] = "campaign_directory.added"
        campaign_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.campaign_ids = [*aggregate.campaign_ids, self.campaign_id]

    @classmethod
    def open(cls, meta: Meta) -> CampaignDirectory:
        return cls._create(cls.Opened, id=cls.ID, **meta.fields())

    def add(self, campaign_id: UUID, meta: Meta) -> None:
        self.trigger_event(self.Added, campaign_id=str(campaign_id), **meta.fields())
