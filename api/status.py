"""Where the pipeline stands: positions, lag and parked customers of the relay and every
projection — one report for ``GET /v1/projections``, ``clientele projections status`` and
the Prometheus gauges."""

from __future__ import annotations

from typing import Any

from api.bootstrap import Services
from consumers.relay import checkpoint, parked_summary
from projections.framework import Binding, positions


def pipeline_report(svc: Services) -> dict[str, Any]:
    """``{"head", "mode", "relay"?: {"position", "lag", "parked"}, "projections": [{"name",
    "position", "lag", "parked"}]}``; ``parked`` is ``{"count", "oldest": {"customer_id",
    "version", "position", "size", "reason", "parked_at", "attempts", "retry_at",
    "age_seconds"} | None}``. ``relay`` only in full mode."""
    feed = svc.feed
    reached = positions(svc.read_store)
    report: dict[str, Any] = {"head": feed.head(), "mode": "embedded" if svc.embedded else "kafka"}
    if svc.outbox is not None:
        published = checkpoint(svc.outbox)
        report["relay"] = {
            "position": published,
            "lag": feed.pending(published),
            "parked": parked_summary(svc.outbox),
        }
    rows = []
    for projector in svc.projectors:
        position = reached.get(projector.name, 0)
        with svc.read_store.transaction(Binding.live(projector).tables) as tx:
            parked = projector.parking.summary(tx)
        rows.append(
            {
                "name": projector.name,
                "position": position,
                "lag": feed.pending(position),
                "parked": parked,
            }
        )
    report["projections"] = rows
    return report
