"""The Customer aggregate's campaign decisions: joining a campaign's group under consent,
valid channels and the frequency cap, and the outcomes a sending service reports
(:class:`domain.customer.Customer` inherits them)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from domain import campaign_events as ev
from domain.errors import ChannelInvalid, FrequencyCapped, InvalidInput, NoConsent
from domain.event_base import Meta

if TYPE_CHECKING:
    from uuid import UUID


class CampaignDecisions:
    """Campaign commands of a customer; state is the aggregate's (``campaigns``,
    ``invalid_channels``), folded by the campaign events."""

    if TYPE_CHECKING:
        consents: dict[str, bool]
        lifecycle_stage: str
        campaigns: dict[str, dict[str, str]]
        invalid_channels: list[str]

        @property
        def id(self) -> UUID: ...
        def require_live(self) -> None: ...
        def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None: ...
        def set_consent(
            self, meta: Meta, purpose: str, granted: bool, source: str | None
        ) -> bool: ...

    def target(
        self,
        meta: Meta,
        *,
        campaign_id: str,
        group: str,
        purpose: str,
        channel: str,
        cap: tuple[int, timedelta],
        rfm_group: str | None,
    ) -> bool:
        """Put the customer in a campaign's ``group``; False when already in it.

        Refused (nothing recorded) for an erased or merged customer, without consent for
        ``purpose`` (:class:`NoConsent`), on a hard-bounced ``channel`` (:class:`ChannelInvalid`),
        or when the customer already had ``cap[0]``
        treatment touches in the ``cap[1]`` before ``meta.occurred_at``
        (:class:`FrequencyCapped`; control members are not contacted, so they use no touch).
        Both groups are refused alike, so treatment and control are drawn from one eligible
        audience. Deciding on the aggregate makes the cap race-safe: two launches writing the
        same customer conflict on its version and the second decides again.
        """
        self.require_live()
        if campaign_id in self.campaigns:
            return False
        if not self.consents.get(purpose):
            raise NoConsent(f"customer {self.id} has not consented to {purpose}", purpose=purpose)
        if channel in self.invalid_channels:
            raise ChannelInvalid(f"customer {self.id}: {channel} hard-bounced", channel=channel)
        limit, window = cap
        since = meta.occurred_at - window
        touches = sum(
            1
            for touch in self.campaigns.values()
            if touch["group"] == "treatment" and datetime.fromisoformat(touch["at"]) > since
        )
        if touches >= limit:
            raise FrequencyCapped(
                f"customer {self.id} had {touches} marketing touches in the cap window",
                touches=touches,
                limit=limit,
            )
        self.trigger_event(
            ev.CampaignTargeted,
            campaign_id=campaign_id,
            group=group,
            purpose=purpose,
            channel=channel,
            lifecycle_stage=self.lifecycle_stage,
            rfm_group=rfm_group,
            **meta.fields(),
        )
        return True

    def record_campaign_outcome(
        self, meta: Meta, *, campaign_id: str, outcome: str, hard: bool
    ) -> None:
        """A sending service's report on the campaign's message. An ``unsubscribed`` withdraws
        the consent the campaign relied on (source ``campaign:<id>``), in the same command; a
        ``hard`` bounce (bounced only) makes the channel invalid. Refused for a campaign the
        customer is not in the treatment of."""
        self.require_live()
        touch = self.campaigns.get(campaign_id)
        if touch is None or touch["group"] != "treatment":
            raise InvalidInput("campaign_id", f"customer {self.id} was sent nothing by it")
        if hard and outcome != "bounced":
            raise InvalidInput("hard", "only a bounce can be hard")
        self.trigger_event(
            ev.CampaignOutcomeRecorded,
            campaign_id=campaign_id,
            outcome=outcome,
            channel=touch["channel"],
            hard=hard,
            **meta.fields(),
        )
        if outcome == "unsubscribed":
            self.set_consent(meta, touch["purpose"], False, f"campaign:{campaign_id}")
