"""Segment refresh: record, as of an instant, that time-relative, RFM and recommendation segments
are decided again for every customer (the segments read model decides it, with the RFM ranks and
top-3 recommendations of that moment).
Run by ``clientele segments refresh`` and periodically by ``serve``."""

from __future__ import annotations

from datetime import UTC, datetime

from commands.segments import SegmentService
from commands.service import Context
from domain.segment_rules import is_time_relative, uses_recommendations, uses_rfm
from infra.readstore import ReadStore
from projections import segment_queries


def refresh_segments(
    commands: SegmentService,
    read_store: ReadStore,
    at: datetime | None = None,
    *,
    every: float | None = None,
) -> int | None:
    """Record a refresh as of ``at`` (default: now); returns its position.

    ``every`` (seconds; the periodic refresh of ``serve``): the instant is rounded down to a
    multiple of it, so the API processes of a deployment record one refresh per period, and
    nothing is recorded (None) while no segment is time-relative or reads RFM or
    recommendations.
    """
    moment = at or datetime.now(UTC)
    if every is not None:
        with read_store.transaction() as tx:
            rules = [d["rule"] for d in segment_queries.list_definitions(tx)]
        if not any(is_time_relative(r) or uses_rfm(r) or uses_recommendations(r) for r in rules):
            return None
        moment = datetime.fromtimestamp(moment.timestamp() // every * every, UTC)
    return commands.refresh(moment, Context(actor="clientele:segments-refresh"))
