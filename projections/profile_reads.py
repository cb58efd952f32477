"""GET profile's common case in one statement, read without leaving the event loop.

The profile row, the newest churn fit (the segments read model's ``segment_churn_model``) and,
only when there is a fit, the customer's purchase instants (``analytics_purchases``) come from
one statement, so from one snapshot, as the sync path reads them in one transaction
(``api/http/routes/reads.py``). The document is the same: :func:`projections.profile_fold.render`
of the stored state plus ``churn_risk`` (:func:`projections.churn.churn_risk`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from infra.async_reads import AsyncReads
from projections import profile_fold
from projections.churn import churn_risk, fit_from

LIVE_PROFILE = (
    "SELECT p.state, f.fit, CASE WHEN f.fit IS NULL THEN NULL ELSE "
    "(SELECT array_agg(a.occurred_at) FROM {analytics_purchases} a "
    "WHERE a.customer_id = p.customer_id) END "
    "FROM {profiles} p LEFT JOIN {segment_churn_model} f ON f.scope = 'churn' "
    "WHERE p.customer_id = ?"
)
NOT_LIVE = frozenset({"merged", "erased"})
"""Statuses left to the sync path with unknown ids: it answers them (410 naming the final
survivor of a merge chain, 410, 404)."""


async def live_profile(reads: AsyncReads, customer_id: UUID) -> dict[str, Any] | None:
    """The profile document of a live customer, ``churn_risk`` included; None when the
    customer is not live here (unknown, merged, erased)."""
    row = await reads.fetchone(LIVE_PROFILE, (str(customer_id),))
    if row is None:
        return None
    state, fit, purchases = row
    live = profile_fold.render(orjson.loads(state))
    if live["status"] in NOT_LIVE:
        return None
    model = None if fit is None else fit_from(fit)
    instants = [datetime.fromisoformat(at) for at in purchases or ()]
    live["churn_risk"] = churn_risk(model, instants)
    return live
