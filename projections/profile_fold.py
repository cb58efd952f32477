"""The profile fold: one pure fold from a customer's event envelopes to the profile's read shape.

No table of its own: the ``profiles`` read model (:mod:`projections.profiles`), the audit
diffs, segment decisions, rebuilds and time travel all fold with it, so a profile "as of T"
has exactly the shape and values the live profile has for the same events.

**Time travel is bitemporal** (:func:`travel`; README, "Business time"): every event has a
business time (``occurred_at``: when it happened) and a recorded time (``recorded_at``: when
the store learnt it). A view ``known_at=K`` keeps the customer's events up to the first one
recorded after K (what we knew at K: a prefix of the log); ``version=N`` keeps those up to
version N; ``as_of=T`` then keeps, of those, the events that had happened by T. The view folds
what it keeps in version order (the order decisions were made). No event is dated before its
customer's registration, so a view as of T shows the customer from registration on, and
nobody before.

``state`` is plain JSON data (stored as-is by read stores); ``render`` gives the public shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain.events import Registered, moved_fields, patch_map
from domain.personal import Personal, redacted
from infra.envelope import Envelope

PERSONAL: dict[str, Personal] = Registered.PERSONAL
"""The personal fields of a profile: those its registration gives (merges move some of them)."""


class ProfileGap(RuntimeError):
    """An event arrived whose version is not the next one: an earlier event is missing."""


def empty(customer_id: UUID) -> dict[str, Any]:
    """State before the first event (version 0)."""
    return {"customer_id": str(customer_id), "version": 0}


def summarise_orders(orders: dict[str, list[str]]) -> dict[str, Any]:
    """The purchase summary of ``orders`` (id -> [currency, amount, occurred_at]), from scratch."""
    totals: dict[str, Decimal] = {}
    dates = sorted(when for _, _, when in orders.values())
    for currency, amount, _ in orders.values():
        totals[currency] = totals.get(currency, Decimal(0)) + Decimal(amount)
    return {
        "count": len(orders),
        "total": {currency: str(total) for currency, total in sorted(totals.items())},
        "first_at": dates[0] if dates else None,
        "last_at": dates[-1] if dates else None,
    }


def _count_order(summary: dict[str, Any], order: list[str]) -> None:
    """Add one new order to a summary in place: what :func:`summarise_orders` would give."""
    currency, amount, when = order
    totals = summary["total"]
    totals[currency] = str(Decimal(totals.get(currency, 0)) + Decimal(amount))
    summary["total"] = dict(sorted(totals.items()))
    summary["count"] += 1
    summary["first_at"] = min(summary["first_at"] or when, when)
    summary["last_at"] = max(summary["last_at"] or when, when)


def _add_orders(state: dict[str, Any], purchases: dict[str, dict[str, Any]]) -> None:
    orders = state["orders"]
    replacing = any(order_id in orders for order_id in purchases)
    for order_id, purchase in purchases.items():
        orders[order_id] = [purchase["currency"], str(purchase["amount"]), purchase["occurred_at"]]
        if not replacing:  # new orders only add up; a replaced one needs a recount
            _count_order(state["purchases"], orders[order_id])
    if replacing:
        state["purchases"] = summarise_orders(orders)


def _registered(state: dict[str, Any], e: Envelope) -> None:
    data = e.data
    state.update(
        name=data["name"],
        email=data["email"],
        phone=data["phone"],
        attributes=dict(data["attributes"]),
        external_ids=dict(data.get("external_ids") or {}),
        source=data["source"],
        tags=[],
        consents={},
        lifecycle_stage=data["lifecycle_stage"],
        status="active",
        merged_into=None,
        orders={},
        purchases=summarise_orders({}),
        contacts={"count": 0, "last_at": None},
        feedback={"nps": None, "csat": None},
        points=0,
        tier=None,
        registered_at=e.occurred_text,
        created_at=e.recorded_text,
    )


def _profile_updated(state: dict[str, Any], e: Envelope) -> None:
    state.update(e.data["changes"])
    patch_map(state["attributes"], e.data["attributes"])
    patch_map(state.setdefault("external_ids", {}), e.data.get("external_ids") or {})


def _contacted(state: dict[str, Any], e: Envelope) -> None:
    contacts = state["contacts"]
    contacts["count"] += 1
    when = e.occurred_text
    if contacts["last_at"] is None or when > contacts["last_at"]:
        contacts["last_at"] = when


def _purchase(state: dict[str, Any], e: Envelope) -> None:
    purchase = {**e.data, "occurred_at": e.occurred_text}
    _add_orders(state, {e.data["order_id"]: purchase})


def _refunded(state: dict[str, Any], e: Envelope) -> None:
    state["orders"].pop(e.data["order_id"], None)
    state["purchases"] = summarise_orders(state["orders"])


def _feedback(state: dict[str, Any], e: Envelope) -> None:
    for score in ("nps", "csat"):
        if e.data[score] is not None:
            state["feedback"][score] = e.data[score]


def _absorbed(state: dict[str, Any], e: Envelope) -> None:
    state["tags"].extend(e.data["tags"])
    _add_orders(state, e.data["purchases"])
    state["contacts"]["count"] += e.data["contacts_count"]
    for field in moved_fields(e.data):  # named in clear: a value may read null once erased
        state[field] = e.data[field]


def _unmerged(state: dict[str, Any], e: Envelope) -> None:
    if e.data["role"] == "duplicate":
        state["status"], state["merged_into"] = state.pop("status_before_merge", "active"), None
        return
    state["tags"] = [t for t in state["tags"] if t not in e.data["tags"]]
    for order_id in e.data["purchases"]:
        state["orders"].pop(order_id, None)
    state["purchases"] = summarise_orders(state["orders"])
    state["contacts"]["count"] -= e.data["contacts_count"]
    for field in moved_fields(e.data):
        state[field] = None


def _merged_into(state: dict[str, Any], e: Envelope) -> None:
    state["status_before_merge"] = state["status"]
    state["status"], state["merged_into"] = "merged", e.data["survivor_id"]


def _erased(state: dict[str, Any], _: Envelope) -> None:
    state.update(status="erased", **{field: redacted(s) for field, s in PERSONAL.items()})


def _consent(granted: bool) -> Any:
    return lambda state, e: state["consents"].update({e.data["purpose"]: granted})


def _set(**values: Any) -> Any:
    return lambda state, _: state.update(values)


_APPLY: dict[str, Any] = {
    "customer.registered": _registered,
    "customer.profile_updated": _profile_updated,
    "customer.contacted": _contacted,
    "customer.tagged": lambda s, e: s["tags"].append(e.data["tag"]),
    "customer.untagged": lambda s, e: s.update(tags=[t for t in s["tags"] if t != e.data["tag"]]),
    "customer.purchase_recorded": _purchase,
    "customer.purchase_refunded": _refunded,
    "customer.feedback_recorded": _feedback,
    "customer.consent_granted": _consent(True),
    "customer.consent_withdrawn": _consent(False),
    "customer.lifecycle_stage_changed": lambda s, e: s.update(lifecycle_stage=e.data["stage"]),
    "customer.churned": _set(status="churned", lifecycle_stage="churned"),
    "customer.reactivated": _set(status="active", lifecycle_stage="active"),
    "customer.merged_into": _merged_into,
    "customer.duplicate_absorbed": _absorbed,
    "customer.unmerged": _unmerged,
    "customer.erased": _erased,
    "customer.points_earned": lambda s, e: s.update(points=s["points"] + e.data["points"]),
    "customer.points_redeemed": lambda s, e: s.update(points=s["points"] - e.data["points"]),
    "customer.points_expired": lambda s, e: s.update(points=s["points"] - e.data["points"]),
    "customer.points_revoked": lambda s, e: s.update(points=s["points"] - e.data["points"]),
    "customer.tier_changed": lambda s, e: s.update(tier=e.data["tier"]),
    "customer.campaign_targeted": lambda _s, _e: None,  # the campaigns read model keeps it
    "customer.campaign_outcome_recorded": lambda _s, _e: None,  # ditto
}


_SAME_FIELDS: dict[str, tuple[str, ...]] = {
    "customer.contacted": ("contacts",),
    "customer.tagged": ("tags",),
    "customer.untagged": ("tags",),
    "customer.purchase_recorded": ("purchases",),
    "customer.purchase_refunded": ("purchases",),
    "customer.feedback_recorded": ("feedback",),
    "customer.consent_granted": ("consents",),
    "customer.consent_withdrawn": ("consents",),
    "customer.lifecycle_stage_changed": ("lifecycle_stage",),
    "customer.churned": ("status", "lifecycle_stage"),
    "customer.reactivated": ("status", "lifecycle_stage"),
    "customer.merged_into": ("status", "merged_into"),
    "customer.points_earned": ("points",),
    "customer.points_redeemed": ("points",),
    "customer.points_expired": ("points",),
    "customer.points_revoked": ("points",),
    "customer.tier_changed": ("tier",),
    "customer.campaign_targeted": (),
    "customer.campaign_outcome_recorded": (),
}


def changed_fields(envelope: Envelope) -> tuple[str, ...] | None:
    """The top-level profile fields :func:`fold` may change for ``envelope`` (its version,
    position and time aside, and the order book of purchases); None: any (registrations,
    merges, unmerges, erasures, unknown types). Lets a batch copy and compare only those."""
    if envelope.type == "customer.profile_updated":
        return (*envelope.data["changes"], "attributes", "external_ids")
    return _SAME_FIELDS.get(envelope.type)


def apply(state: dict[str, Any], envelope: Envelope) -> bool:
    """Fold one envelope into ``state`` (in place). Idempotent on (customer, version).

    Returns False for an already-applied version; raises :class:`ProfileGap` if a version
    is missing in between.
    """
    if envelope.version <= state["version"]:
        return False
    if envelope.version != state["version"] + 1:
        raise ProfileGap(
            f"customer {envelope.customer_id}: got version {envelope.version} "
            f"after {state['version']}"
        )
    fold(state, envelope)
    return True


def fold(state: dict[str, Any], envelope: Envelope) -> None:
    """Fold one envelope into ``state`` (in place), whatever came before it: what
    :func:`apply` does after its version check, and what time travel does with the events a
    view keeps (:func:`travel`), which need not be consecutive versions."""
    _APPLY[envelope.type](state, envelope)
    _stamp(state, envelope)


def _stamp(state: dict[str, Any], envelope: Envelope) -> None:
    """The bookkeeping of the newest envelope folded: version, position, time recorded."""
    state["version"] = envelope.version
    state["position"] = envelope.position
    state["updated_at"] = envelope.recorded_text


def in_view(
    envelopes: Iterable[Envelope],
    *,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
    version: int | None = None,
) -> Iterator[Envelope]:
    """The envelopes a bitemporal view keeps of one customer's ``envelopes`` (in version
    order), in that order; none if the registration had not happened by ``as_of``."""
    for envelope in envelopes:
        if (known_at is not None and envelope.recorded_at > known_at) or (
            version is not None and envelope.version > version
        ):
            return
        if as_of is not None and envelope.occurred_at > as_of:
            if envelope.version == 1:  # registered after as_of: nobody yet
                return
            continue
        yield envelope


def travel(
    customer_id: UUID,
    envelopes: Iterable[Envelope],
    *,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
    version: int | None = None,
) -> dict[str, Any] | None:
    """The profile state of a view of ``envelopes`` (one customer's, in version order; see the
    module docstring), or None when the view holds no registration.

    The state :func:`fold` gives, key for key and in the same key order: the first envelope is
    folded, the others only applied, and the last one's bookkeeping is stamped once at the end
    (no event's change reads it; the first fold put its keys in their places)."""
    state = empty(customer_id)
    last = None
    for envelope in in_view(envelopes, as_of=as_of, known_at=known_at, version=version):
        if last is None:
            fold(state, envelope)
        else:
            _APPLY[envelope.type](state, envelope)
        last = envelope
    if last is None:
        return None
    _stamp(state, last)
    return state


def render(state: dict[str, Any]) -> dict[str, Any]:
    """The public profile shape (docs/architecture.md, "Contracts: HTTP"), without internal bookkeeping."""
    return {
        key: value for key, value in state.items() if key not in ("orders", "status_before_merge")
    }
