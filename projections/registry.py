"""Every read model, in the order they are applied within one batch.

Segments come last: their definition and refresh events decide every customer (the heaviest
step of a batch), and they are fed in log order in every mode (``Projector.log_order``).
"""

from __future__ import annotations

from projections.analytics import AnalyticsProjector
from projections.audit_history import AuditHistoryProjector
from projections.campaigns import CampaignsProjector
from projections.care import CareProjector
from projections.customer_value import ValueProjector
from projections.duplicates import DuplicatesProjector
from projections.framework import Projector
from projections.profiles import ProfilesProjector
from projections.recommendations import RecommendationsProjector
from projections.segments import SegmentsProjector


def all_projectors() -> list[Projector]:
    return [
        ProfilesProjector(),
        AuditHistoryProjector(),
        AnalyticsProjector(),
        CareProjector(),
        CampaignsProjector(),
        RecommendationsProjector(),
        ValueProjector(),
        DuplicatesProjector(),
        SegmentsProjector(),
    ]


def by_name(name: str) -> Projector:
    """The projector called ``name``; ``KeyError`` lists the known names."""
    projectors = {p.name: p for p in all_projectors()}
    if name not in projectors:
        raise KeyError(f"unknown projection {name!r}; known: {', '.join(projectors)}")
    return projectors[name]
