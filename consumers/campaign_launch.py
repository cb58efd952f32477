"""Launching a campaign: freeze its audience at one store position, then target each member.

1. ``campaign.launch_started`` records the store position ``P`` (the store's head) and the
   frequency cap in force; a launch that stopped half-way is resumed with the same ``P`` and
   cap (``launching`` campaigns only), so a resumed launch targets exactly the audience the
   first attempt would have. An inline-rule audience is first defined as the segment
   ``campaign-<id>`` (:mod:`domain.campaign_audience`), before ``P`` is taken: from here on
   both kinds of audience are one segment. Only the launcher defines such a segment
   (:meth:`commands.segments.SegmentService.define_audience`; users are refused the
   namespace), and only when it starts a launch: a resumed launch defines nothing, it reads
   the definition in force at ``P``. The start is refused (409) if the campaign's audience was
   edited after it was read.
2. Once the segments read model has applied every event it is fed up to ``P``, the audience is the
   segment's members at ``P`` (its change history, :mod:`projections.segments`), by customer
   id.
3. Each member is sent a :class:`commands.campaigns.TargetForCampaign` in batches of
   ``batch_size`` (one group-committed store transaction each), with the group from the
   campaign's keyed hash and the launch's business time as exposure. A customer already in
   the campaign is accepted with nothing recorded (the aggregate knows its campaigns), so a
   resumed or concurrent launch of the same campaign records nobody twice, with no
   idempotency records to write. The customer aggregate refuses the ineligible (no consent,
   erased, merged, over the frequency cap, race-safe: :meth:`domain.customer.Customer.target`);
   they are counted by reason. Progress is reported per batch.
4. ``campaign.launched`` records ``{position, audience, treatment, control, excluded}``. The
   launch answers these counts with the freeze position as ``launch_position`` and, as
   ``position``, the store position the launch reached (its ``campaign.launched``): a client
   reads its own writes by sending that as ``X-Min-Position``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import structlog

from commands.campaigns import CampaignService, FrequencyCap, TargetForCampaign
from commands.segments import SegmentService
from commands.service import CommandService, Context
from domain.campaign import CONTROL, TREATMENT, Campaign, CampaignStatus
from domain.campaign_audience import segment_of
from domain.errors import ConcurrentWrite, DomainError, InvalidInput
from domain.event_base import Meta
from domain.segment import Segment
from infra import feed_queries
from infra.metrics import CAMPAIGN_TARGETED
from infra.readstore import ReadStore
from infra.sql_chunks import chunks
from infra.store import FEED_TOPICS, EventStore
from projections.framework import positions

log = structlog.get_logger(__name__)


class AudienceNotReady(DomainError):
    """A read model has not reached what a launch (segments) or a dispatch (campaigns) needs
    in time (503)."""

    code = "not-caught-up"


@dataclass
class LaunchProgress:
    """How far a launch is: members ``done`` of ``total``, and the tallies so far."""

    campaign_id: str
    position: int
    total: int
    done: int = 0
    treatment: int = 0
    control: int = 0
    excluded: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "audience": self.total,
            TREATMENT: self.treatment,
            CONTROL: self.control,
            "excluded": dict(sorted(self.excluded.items())),
        }


class CampaignLauncher:
    """Launches campaigns of ``campaigns`` by sending target commands through ``commands``
    (inline-rule audiences are defined through ``segments``). ``catch_up`` (embedded mode)
    brings the read models up to the store now; without it the launcher waits up to
    ``wait_seconds`` for the consumers."""

    def __init__(
        self,
        campaigns: CampaignService,
        commands: CommandService,
        segments: SegmentService,
        read_store: ReadStore,
        cap: FrequencyCap,
        *,
        catch_up: Callable[[], object] | None = None,
        batch_size: int = 500,
        wait_seconds: float = 60.0,
    ) -> None:
        self.campaigns = campaigns
        self.commands = commands
        self.segments = segments
        self.store: EventStore = campaigns.store
        self.read_store = read_store
        self.cap = cap
        self.catch_up = catch_up
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds

    def launch(
        self,
        campaign_id: UUID,
        context: Context,
        on_progress: Callable[[LaunchProgress], None] | None = None,
    ) -> dict[str, Any]:
        """Launch (or resume the launch of) a campaign; its counts and the store position the
        launch reached (:meth:`_answer`). A launched (or completed) campaign answers its
        recorded counts; a cancelled one is refused (409)."""
        campaign = self.campaigns.get(campaign_id)
        if campaign.status in (CampaignStatus.LAUNCHED, CampaignStatus.COMPLETED):
            return self._answer(campaign)
        audience = campaign.spec["audience"]
        segment_id = segment_of(campaign.id, audience)
        # only a start defines: a resumed launch reads what was defined before its position,
        # and a cancelled campaign is refused by start_launch
        starting = campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
        if starting and "rule" in audience:
            self.segments.define_audience(campaign.id, audience["rule"], context)
        elif starting and self.store.position_of(Segment.id_for(segment_id), 1) is None:
            raise InvalidInput("audience.segment", f"no segment {segment_id!r}")
        position = self.store.head()

        def begin(c: Campaign, meta: Meta) -> bool:
            if c.status != CampaignStatus.LAUNCHING and c.spec["audience"] != audience:
                raise ConcurrentWrite("the campaign's audience was edited as its launch started")
            return c.start_launch(position, self.cap.view(), meta)

        campaign, _ = self.campaigns.change(campaign_id, context, begin)
        assert campaign.launch is not None
        position = campaign.launch["position"]
        segment_id = segment_of(campaign.id, campaign.spec["audience"])  # as frozen
        self._reach(position)
        members = self._audience(segment_id, position)
        progress = LaunchProgress(str(campaign_id), position, len(members))
        log.info("campaign launch", campaign_id=str(campaign_id), audience=len(members))
        for page in chunks(members, self.batch_size):
            self._target(campaign, page, context, progress)
            if on_progress is not None:
                on_progress(progress)
        counts = progress.counts()
        try:
            campaign, _ = self.campaigns.change(
                campaign_id, context, lambda c, meta: c.finish_launch(counts, meta)
            )
        except DomainError:  # a concurrent launch of the same campaign finished first
            finished = self.campaigns.get(campaign_id)
            if finished.outcome is None:
                raise
            return self._answer(finished)
        log.info("campaign launched", campaign_id=str(campaign_id), **counts)
        return self._answer(campaign)

    def launch_due(
        self,
        now: datetime,
        context: Context,
        *,
        on_refused: Callable[[str, DomainError], None] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Launch every scheduled campaign whose ``scheduled_at`` is at or before ``now``
        (and resume every launch that stopped); ``{campaign_id: answer}``. A campaign whose
        launch is refused raises, or with ``on_refused`` is reported to it and left out."""
        due = [
            c.id
            for c in self.campaigns.list()
            if c.status == CampaignStatus.LAUNCHING
            or (
                c.status == CampaignStatus.SCHEDULED
                and datetime.fromisoformat(c.spec["scheduled_at"]) <= now
            )
        ]
        launched = {}
        for campaign_id in due:
            try:
                launched[str(campaign_id)] = self.launch(campaign_id, context)
            except DomainError as error:
                if on_refused is None:
                    raise
                on_refused(str(campaign_id), error)
        return launched

    def _answer(self, campaign: Campaign) -> dict[str, Any]:
        """The launch's answer: ``{position, version, launch_position, audience, treatment,
        control, excluded}``. ``position`` is the store position of the campaign's newest
        event (its ``campaign.launched``, or later), which every event of the launch
        precedes: a read sent with ``X-Min-Position`` set to it sees the whole launch.
        ``launch_position`` is the position the audience was frozen at, ``version`` the
        campaign's (its ``ETag``)."""
        assert campaign.outcome is not None
        reached = self.store.position_of(campaign.id, campaign.version)
        assert reached is not None
        counts = {k: v for k, v in campaign.outcome.items() if k != "position"}
        return {
            "position": reached,
            "version": campaign.version,
            "launch_position": campaign.outcome["position"],
            **counts,
        }

    def _reach(self, position: int) -> None:
        """Wait until the segments read model has applied every fed event up to ``position``."""
        deadline = time.monotonic() + self.wait_seconds
        if self.catch_up is not None:  # embedded: tables made, read models fed, here and now
            self.catch_up()
        while True:
            at = positions(self.read_store).get("segments", 0)
            following = feed_queries.in_log_order(self.store, at, 1, FEED_TOPICS)
            if at >= position or not following or following[0][0].id > position:
                return
            if self.catch_up is not None:
                self.catch_up()
            elif time.monotonic() > deadline:
                raise AudienceNotReady(
                    f"the segments read model is at {at}, the launch needs {position}",
                    position=position,
                    reached=at,
                )
            else:
                time.sleep(0.2)

    def _audience(self, segment_id: str, position: int) -> list[str]:
        """Members of the segment at ``position``: their newest change at or before it is
        ``entered``."""
        with self.read_store.snapshot() as tx:
            rows = tx.fetchall(
                "SELECT c.customer_id FROM {segment_changes} c WHERE c.segment_id = ? "
                "AND c.change = 'entered' AND c.position = (SELECT MAX(d.position) FROM "
                "{segment_changes} d WHERE d.segment_id = c.segment_id "
                "AND d.customer_id = c.customer_id AND d.position <= ?) ORDER BY c.customer_id",
                (segment_id, position),
            )
        return [str(row[0]) for row in rows]

    def _rfm_groups(self, customers: Sequence[str]) -> dict[str, str]:
        with self.read_store.snapshot() as tx:
            rows = tx.fetchall(
                "SELECT customer_id, scores FROM {segment_rfm} WHERE customer_id IN "
                f"({', '.join('?' * len(customers))})",
                customers,
            )
        return {str(c): str(orjson.loads(s)["group"]) for c, s in rows}

    def _target(
        self,
        campaign: Campaign,
        members: Sequence[str],
        context: Context,
        progress: LaunchProgress,
    ) -> None:
        assert campaign.launch is not None
        spec, cap = campaign.spec, campaign.launch["frequency_cap"]
        rfm = self._rfm_groups(members)
        commands = [
            TargetForCampaign(
                customer_id=UUID(member),
                campaign_id=str(campaign.id),
                group=campaign.group_of(UUID(member)),
                purpose=spec["purpose"],
                channel=spec["channel"],
                max_touches=cap["max_touches"],
                window_days=cap["window_days"],
                rfm_group=rfm.get(member),
                occurred_at=campaign.launch_time,
            )
            for member in members
        ]
        for command, outcome in zip(
            commands, self.commands.execute_batch(commands, context), strict=True
        ):
            if outcome.problem is None:
                if command.group == TREATMENT:
                    progress.treatment += 1
                else:
                    progress.control += 1
                CAMPAIGN_TARGETED.labels(group=command.group).inc()
            else:
                code = outcome.problem.code
                progress.excluded[code] = progress.excluded.get(code, 0) + 1
                CAMPAIGN_TARGETED.labels(group=f"excluded:{code}").inc()
        progress.done += len(members)
