"""Dispatch: publish a launched campaign's treatment members to ``campaign.dispatch``.

Members are paged from the campaigns read model by customer id (erased and merged customers
are gone from it), and each is checked again on the customer aggregate at dispatch time: a
customer who withdrew consent for the campaign's purpose since the launch, was erased or
merged, or whose channel hard-bounced gets no message (counted by reason). A message is keyed
by customer id and carries ``{message_id, campaign_id, customer_id, channel, purpose, group,
content_ref, dispatched_at}``: no contact details (a sender with the ``pii`` scope reads them
from ``GET /v1/customers/{id}``, so personal data stays under the encryption rules). The
``message_id`` is derived from (campaign, customer), so a sender drops the duplicates a
re-run produces (delivery is at-least-once). Each page is sent, flushed (bounded) and every
ack awaited; a broker outage is waited out (:class:`~infra.resilience.Supervisor`) and the
page sent again, so nothing acknowledged as sent is missing. Senders report outcomes back as
``campaign_outcome`` commands (batch route or command topic).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any
from uuid import UUID, uuid5

import orjson
import structlog
from kafka import KafkaProducer

from commands.campaigns import CampaignService
from consumers.campaign_launch import AudienceNotReady
from domain.campaign import TREATMENT, CampaignStatus, InvalidCampaignTransition
from domain.customer import Customer
from infra.bulk_load import load_many
from infra.readstore import ReadStore
from infra.resilience import Supervisor
from projections.campaigns import audience, member_count

log = structlog.get_logger(__name__)
MESSAGES = UUID("a4e1f7c2-0b3d-4c5e-9f81-2d6a7b8c9e0f")
ACK_TIMEOUT_SECONDS = 30.0


def skip_reason(customer: Customer | None, purpose: str, channel: str) -> str | None:
    """Why ``customer`` gets no message now (None: send)."""
    if customer is None or not customer.is_live:
        return "gone"
    if not customer.consents.get(purpose):
        return "no-consent"
    if channel in customer.invalid_channels:
        return "channel-invalid"
    return None


class CampaignDispatcher:
    """Publishes campaigns of ``campaigns`` to ``topic`` through ``producer``."""

    def __init__(
        self,
        campaigns: CampaignService,
        read_store: ReadStore,
        producer: KafkaProducer,
        topic: str,
        *,
        batch_size: int = 500,
        wait_seconds: float = 60.0,
    ) -> None:
        self.campaigns = campaigns
        self.read_store = read_store
        self.producer = producer
        self.topic = topic
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        # a one-shot command: retries transient errors only, until they pass (or Ctrl-C)
        self._supervisor = Supervisor("campaign-dispatch", threading.Event(), only_transient=True)

    def dispatch(
        self, campaign_id: UUID, on_progress: Callable[[int], None] | None = None
    ) -> dict[str, Any]:
        """Send every eligible treatment member; ``{"sent", "skipped": {reason: n}}``. Only a
        launched campaign is dispatched (409 otherwise)."""
        campaign = self.campaigns.get(campaign_id)
        if campaign.status != CampaignStatus.LAUNCHED:
            raise InvalidCampaignTransition(
                f"cannot dispatch a {campaign.status} campaign",
                campaign_id=str(campaign_id),
                campaign_status=campaign.status,
            )
        counts = campaign.outcome
        assert counts is not None  # recorded by campaign.launched
        self._await_members(campaign_id, counts["treatment"] + counts["control"])
        spec = campaign.spec
        purpose, channel = spec["purpose"], spec["channel"]
        sent, skipped, after = 0, dict[str, int](), ""
        now = datetime.now(UTC).isoformat()
        while True:
            with self.read_store.snapshot() as tx:
                page = audience(
                    tx, str(campaign_id), group=TREATMENT, after=after, limit=self.batch_size
                )
            if not page:
                break
            self.campaigns.store.forget_erased()  # no key shredded elsewhere opens a copy
            loaded: Any = load_many(self.campaigns.store, [UUID(c) for c, _ in page])
            messages: list[dict[str, Any]] = []
            for customer_id, _ in page:
                reason = skip_reason(loaded.get(UUID(customer_id)), purpose, channel)
                if reason is not None:
                    skipped[reason] = skipped.get(reason, 0) + 1
                    continue
                messages.append(
                    {
                        "message_id": str(uuid5(MESSAGES, f"{campaign_id}:{customer_id}")),
                        "campaign_id": str(campaign_id),
                        "customer_id": customer_id,
                        "channel": channel,
                        "purpose": purpose,
                        "group": TREATMENT,
                        "content_ref": spec["content_ref"],
                        "dispatched_at": now,
                    }
                )
            self._supervisor.call(partial(self._publish, messages))
            sent += len(messages)
            after = page[-1][0]
            if on_progress is not None:
                on_progress(sent + sum(skipped.values()))
        log.info("campaign dispatched", campaign_id=str(campaign_id), sent=sent, skipped=skipped)
        return {"sent": sent, "skipped": dict(sorted(skipped.items()))}

    def _publish(self, messages: list[dict[str, Any]]) -> None:
        """Send one page and wait for every ack; a flush or an ack that fails raises (the
        supervisor sends the page again: the acked ones repeat, with the same message_id)."""
        futures = [
            self.producer.send(
                self.topic,
                key=message["customer_id"].encode(),
                value=orjson.dumps(message),
                headers=[("type", b"campaign.dispatch")],
            )
            for message in messages
        ]
        self.producer.flush()  # bounded (infra.kafka_producer.RenewingProducer)
        for future in futures:
            future.get(timeout=ACK_TIMEOUT_SECONDS)

    def _await_members(self, campaign_id: UUID, expected: int) -> None:
        """Wait until the campaigns read model holds all ``expected`` members of the launch:
        in full mode it is fed from Kafka and may still be applying the targeting events, and
        paging a partial audience would leave members without their message."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            with self.read_store.snapshot() as tx:
                held = member_count(tx, str(campaign_id))
            if held >= expected:
                return
            if time.monotonic() > deadline:
                raise AudienceNotReady(
                    f"the campaigns read model holds {held} of the launch's {expected} members",
                    campaign_id=str(campaign_id),
                    held=held,
                    expected=expected,
                )
            time.sleep(0.2)
