"""The loyalty view of one customer (``GET /v1/customers/{id}/loyalty``): a pure fold of the
customer's events in the order they were recorded, no wall clock, so it reads the same
whenever it is asked and however often it is rebuilt.

It shows the balance, the lots still holding points (oldest first, with their expiry as an
instant and as a UTC date), what was earned, redeemed, expired and taken back, the tier and
the change that set it: when, why (the rule and policy version of an automatic change) and the
spend per currency that decided it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from domain.events import CustomerEvent, TierChanged
from domain.points import Ledger


def loyalty_view(events: Iterable[CustomerEvent]) -> dict[str, Any]:
    """The view of one customer's ``events`` (stream order; the first is the registration).

    Shape: ``{customer_id, version, balance, earned, redeemed, expired, revoked, lots:
    [{lot, order_id, earned_at, points, remaining, expires_at, expires_on}], tier: {name, since,
    reason, spend}}``; ``tier`` is null before the first tier change."""
    ledger = Ledger()
    last: CustomerEvent | None = None
    tier: TierChanged | None = None
    for event in events:
        ledger.fold(event.TYPE, event.data(), event.occurred_at, event.originator_version)
        if isinstance(event, TierChanged):
            tier = event
        last = event
    if last is None:
        raise ValueError("a customer's events begin with their registration")
    return {
        "customer_id": str(last.originator_id),
        "version": last.originator_version,
        "balance": ledger.balance,
        "earned": ledger.earned,
        "redeemed": ledger.redeemed,
        "expired": ledger.expired,
        "revoked": ledger.revoked,
        "lots": [lot.view() for lot in ledger.held()],
        "tier": None
        if tier is None
        else {
            "name": tier.tier,
            "since": tier.occurred_at.isoformat(),
            "reason": tier.reason,
            "spend": tier.spend,
        },
    }
