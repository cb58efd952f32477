"""Campaign events of a customer: joining a campaign's group, and the outcomes reported.
Stored under their historical topics (``TOPIC``: ``domain.events:<class>``), which
:mod:`domain.events` resolves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.customer_event import CustomerEvent

if TYPE_CHECKING:
    from domain.customer import Customer


class CampaignTargeted(CustomerEvent):
    """The customer is in a campaign's audience (:mod:`domain.campaign`), in ``group``
    (``treatment`` or ``control``), under consent for ``purpose``; ``lifecycle_stage`` and
    ``rfm_group`` are the customer's at that moment (the results' breakdown: decided before
    exposure, so the groups compare like with like). Its ``occurred_at`` is the exposure."""

    TYPE = "customer.campaign_targeted"
    TOPIC = "domain.events:CampaignTargeted"
    campaign_id: str
    group: str
    purpose: str
    channel: str
    lifecycle_stage: str
    rfm_group: str | None

    def apply(self, aggregate: Customer) -> None:
        aggregate.campaigns = {
            **aggregate.campaigns,
            self.campaign_id: {
                "group": self.group,
                "at": self.occurred_at.isoformat(),
                "purpose": self.purpose,
                "channel": self.channel,
            },
        }


class CampaignOutcomeRecorded(CustomerEvent):
    """A sending service reported what became of a campaign's message to the customer:
    ``outcome`` is delivered, bounced, opened, clicked, unsubscribed or complained; ``hard``
    marks a hard bounce, which makes the ``channel`` invalid for the customer (later launches
    leave them out) until their contact details change."""

    TYPE = "customer.campaign_outcome_recorded"
    TOPIC = "domain.events:CampaignOutcomeRecorded"
    campaign_id: str
    outcome: str
    channel: str
    hard: bool

    def apply(self, aggregate: Customer) -> None:
        if self.hard:
            aggregate.invalid_channels = sorted({*aggregate.invalid_channels, self.channel})
