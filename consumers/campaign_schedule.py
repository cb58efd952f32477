"""Scheduled campaigns launch by themselves: a periodic task, no cron.

:class:`CampaignScheduler` asks the launcher, on every tick, to launch each scheduled campaign
whose ``scheduled_at`` has come by its business clock (and to resume any launch that
stopped). It runs every ``CLIENTELE_CAMPAIGN_SCHEDULE_SECONDS`` inside the policy runner
(``clientele policies run``, and ``clientele serve`` in embedded mode: see
:func:`bootstrap.processes.policy_parts`).

Two schedulers at once (two policy runners, or a runner and ``clientele campaigns
launch-due``) launch each campaign once: the campaign's ``launch_started`` is written against
its version (the second writer is refused by the store and finds the launch under way, with
its position), a customer already in the campaign is accepted with nothing recorded, and only
one ``campaign.launched`` is recorded (:mod:`consumers.campaign_launch`). A campaign that
cannot be launched now (its segment unknown, the read models behind) is logged and tried
again next tick; it never holds up the others.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from commands.service import Context
from consumers.campaign_launch import CampaignLauncher
from consumers.periodic import Every
from domain.errors import DomainError

log = structlog.get_logger(__name__)
ACTOR = "clientele:campaign-scheduler"


def wall_clock() -> datetime:
    """The current time, timezone-aware UTC: the scheduler's default clock."""
    return datetime.now(UTC)


class CampaignScheduler:
    """Launches the due campaigns of ``launcher`` as of ``clock()`` (business time; tests
    inject their own) on every :meth:`tick`."""

    def __init__(
        self, launcher: CampaignLauncher, clock: Callable[[], datetime] = wall_clock
    ) -> None:
        self.launcher = launcher
        self.clock = clock

    def tick(self) -> dict[str, dict[str, Any]]:
        """Launch what is due now: ``{campaign_id: answer}`` of the campaigns launched (or
        found launched by another scheduler) this tick; those refused are logged and left for
        the next tick."""
        return self.launcher.launch_due(self.clock(), Context(actor=ACTOR), on_refused=_refused)


def _refused(campaign_id: str, error: DomainError) -> None:
    log.warning("campaign.launch_deferred", campaign_id=campaign_id, problem=str(error))


def scheduled_launches(launcher: CampaignLauncher, seconds: float) -> list[Every]:
    """The periodic task of the policy runner: a :class:`CampaignScheduler` on the wall
    clock every ``seconds`` (none when 0)."""
    return [Every(seconds, CampaignScheduler(launcher).tick, "campaigns")] if seconds else []
