"""Where the pipeline stands: positions, lag and parked customers of the relay and every
projection — one report for ``GET /v1/projections``, ``clientele projections status`` and
the Prometheus gauges."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from api.bootstrap import Services
from consumers.catch_up import CATCH_UP_EVENTS
from consumers.relay import checkpoint, parked_summary, parking_lot
from projections.framework import Binding, positions
from projections.parking import Parked
from projections.registry import by_name

# At most this many events are looked at to see whether only parked customers lie between
# a read model's position and the one a client waits for.
MAX_HELD_SCAN = 1000


def pipeline_report(svc: Services) -> dict[str, Any]:
    """``{"head", "mode", "state", "catch_up"?, "relay"?: {"position", "lag", "parked"},
    "projections": [{"name", "position", "lag", "state", "parked"}]}``.

    ``lag`` counts exactly (never capped) the events a stage is fed after its position:
    customer events for the relay and projections fed from ``customer.events``, segment
    events too for those fed in log order. ``state`` is ``"catching_up"`` while the lag is at
    least :data:`~consumers.catch_up.CATCH_UP_EVENTS`, else ``"live"``; the report's ``state``
    is ``"catching_up"`` while any projection is. ``catch_up`` (embedded mode: the in-process
    runner) is :meth:`~consumers.catch_up.CatchUpProgress.to_dict`. ``parked`` is ``{"count",
    "oldest": {"customer_id", "version", "position", "size", "reason", "parked_at",
    "attempts", "retry_at", "age_seconds"} | None}``. ``relay`` only in full mode.
    """
    feed = svc.feed
    reached = positions(svc.read_store)
    counted: dict[tuple[int, bool], int] = {}

    def lag(position: int, customers_only: bool) -> int:
        key = (position, customers_only)
        if key not in counted:
            counted[key] = feed.pending(position, customers_only=customers_only)
        return counted[key]

    report: dict[str, Any] = {"head": feed.head(), "mode": "embedded" if svc.embedded else "kafka"}
    if svc.runner is not None:
        report["catch_up"] = svc.runner.progress().to_dict()
    if svc.outbox is not None:
        published = checkpoint(svc.outbox)
        report["relay"] = {
            "position": published,
            "lag": lag(published, True),
            "parked": parked_summary(svc.outbox),
        }
    rows = []
    for projector in svc.projectors:
        position = reached.get(projector.name, 0)
        with svc.read_store.snapshot(Binding.live(projector).tables) as tx:
            parked = projector.parking.summary(tx)
        behind = lag(position, not projector.log_order)
        rows.append(
            {
                "name": projector.name,
                "position": position,
                "lag": behind,
                "state": "catching_up" if behind >= CATCH_UP_EVENTS else "live",
                "parked": parked,
            }
        )
    report["projections"] = rows
    report["state"] = (
        "catching_up" if any(row["state"] == "catching_up" for row in rows) else "live"
    )
    return report


def held_customers(
    svc: Services, names: Iterable[str], customer_id: str | None = None
) -> dict[str, tuple[str, Parked]]:
    """Customers (or only ``customer_id``) held back by the relay or by the projections
    ``names``: customer id -> (``"relay"`` or the projection, where it is held)."""
    held: dict[str, tuple[str, Parked]] = {}
    for name in names:
        projector = by_name(name)
        with svc.read_store.snapshot(Binding.live(projector).tables) as tx:
            for parked in projector.parking.listing(tx, customer_id=customer_id):
                held.setdefault(parked.customer_id, (name, parked))
    if svc.outbox is not None:  # its table exists: ``migrate`` made it
        with svc.outbox.transaction() as tx:
            for parked in parking_lot().listing(tx, customer_id=customer_id):
                held[parked.customer_id] = ("relay", parked)
    return held


def only_held_between(svc: Services, names: Iterable[str], after: int, until: int) -> bool:
    """Whether every customer event at positions ``after < p <= until`` belongs to a held
    customer: read models that stopped short of ``until`` only for them count as there."""
    held = held_customers(svc, names)
    if not held:
        return False
    events = svc.store.customer_notifications(after, MAX_HELD_SCAN)
    if len(events) == MAX_HELD_SCAN and events[-1].id < until:
        return False  # too far behind to say
    return all(str(n.originator_id) in held for n in events if n.id <= until)
