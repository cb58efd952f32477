"""Decisions that span customers: merging a duplicate into a survivor, undoing it, and erasing
a person together with every duplicate merged into them.

Rules (README, "The model"): a merge never widens what may be done with the person's data
(consent withdrawals win), records what moves in parts that stay below the event bound, and
seals moved personal data with the key of the person it belongs to; erasure reaches every copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from domain import events as ev
from domain.customer import Customer
from domain.errors import CustomerErased, InvalidInput, InvalidTransition
from domain.event_base import Meta
from domain.values import MAX_TAGS_PER_CUSTOMER, Status

MERGE_SOURCE_PREFIX = "merge:"
"""Source of the consent changes a merge records: ``merge:<duplicate id>``."""
PURCHASES_PER_PART = 500
"""Purchases per ``duplicate_absorbed`` / ``unmerged`` part, and the most a part may hold: even
with 100-character order ids of 6-byte escapes a part stays far below
:data:`domain.event_base.MAX_EVENT_BYTES`."""

Moved = dict[str, tuple[str, str]]  # personal field -> (value, id of the person it belongs to)


def _shares(
    purchases: dict[str, dict[str, Any]], part_size: int
) -> list[dict[str, dict[str, Any]]]:
    """``purchases`` in order, cut into shares of ``part_size``."""
    if not 1 <= part_size <= PURCHASES_PER_PART:
        raise ValueError(f"part_size {part_size} is not within 1..{PURCHASES_PER_PART}")
    items = list(purchases.items())
    cuts = range(0, len(items), part_size)
    return [dict(items[start : start + part_size]) for start in cuts]


def _in_parts(
    survivor: Customer,
    event_class: type[ev.DuplicateAbsorbed | ev.Unmerged],
    meta: Meta,
    *,
    purchases: dict[str, dict[str, Any]],
    personal: Moved,
    tags: list[str],
    contacts_count: int,
    part_size: int,
    **fields: Any,
) -> set[UUID]:
    """Record what moves between survivor and duplicate as ``parts`` events: shares of the
    purchases, personal values grouped by the person they belong to (each part's are sealed
    with one key), tags and contact count on part 1. Returns the owners of personal values."""
    groups: dict[str, dict[str, str]] = {}
    for field, (value, person) in personal.items():
        groups.setdefault(person, {})[field] = value
    owned: list[tuple[str | None, dict[str, str]]] = list(groups.items())
    shares = _shares(purchases, part_size)
    parts = max(len(shares), len(owned), 1)
    for index in range(parts):
        owner, values = owned[index] if index < len(owned) else (None, {})
        survivor.trigger_event(
            event_class,
            purchases=shares[index] if index < len(shares) else {},
            **{field: values.get(field) for field in event_class.PERSONAL},
            data_owner=owner,
            moved=list(values),
            part=index + 1,
            parts=parts,
            tags=tags if index == 0 else [],
            contacts_count=contacts_count if index == 0 else 0,
            **fields,
            **meta.fields(),
        )
    return {UUID(owner) for owner in groups}


def _origin(customer: Customer, field: str) -> str:
    """Whom the customer's current email/phone belongs to: the person a merge took it from
    (as recorded when it was absorbed), else the customer."""
    value = getattr(customer, field)
    for record in customer.absorbed.values():
        if record.get(field) == value and record.get(f"{field}_owner"):
            return str(record[f"{field}_owner"])
    return str(customer.id)


def merge(
    survivor: Customer, duplicate: Customer, meta: Meta, part_size: int = PURCHASES_PER_PART
) -> set[UUID]:
    """Merge ``duplicate`` into ``survivor``; the survivor's id lives on.

    The survivor takes over the duplicate's tags (within the tag limit), purchases it does not
    have, its contact count, and email/phone where it has none (sealed with the key of the
    person they belong to: the duplicate, or whom it took them from). A merge never widens
    consent: for every purpose the duplicate withdrew, the survivor withdraws too
    (``consent_withdrawn`` with source ``merge:<duplicate id>``, recorded BEFORE anything moves,
    so the survivor never holds the duplicate's contact data with a consent the person took
    back); a grant of the duplicate alone is not taken over. What moves is recorded in
    ``duplicate_absorbed`` parts of at most ``part_size`` purchases (1 to
    :data:`PURCHASES_PER_PART`). Returns whose personal data the survivor's stream now holds.
    """
    if survivor.id == duplicate.id:
        raise InvalidInput("duplicate_id", "a customer cannot be merged into itself")
    survivor.require_live()
    duplicate.require_live()
    room = MAX_TAGS_PER_CUSTOMER - len(survivor.tags)
    new_tags = [t for t in duplicate.tags if t not in survivor.tags][: max(room, 0)]
    new_purchases = {
        order_id: dict(p)
        for order_id, p in duplicate.purchases.items()
        if order_id not in survivor.purchases
    }
    source = f"{MERGE_SOURCE_PREFIX}{duplicate.id}"
    for purpose, granted in sorted(duplicate.consents.items()):
        if not granted and survivor.consents.get(purpose) is not False:
            survivor.trigger_event(
                ev.ConsentWithdrawn, purpose=purpose, source=source, **meta.fields()
            )
    moved: Moved = {
        field: (getattr(duplicate, field), _origin(duplicate, field))
        for field in ev.DuplicateAbsorbed.PERSONAL
        if getattr(survivor, field) is None and getattr(duplicate, field) is not None
    }
    owners = _in_parts(
        survivor,
        ev.DuplicateAbsorbed,
        meta,
        purchases=new_purchases,
        personal=moved,
        tags=new_tags,
        contacts_count=duplicate.contacts_count,
        part_size=part_size,
        duplicate_id=str(duplicate.id),
    )
    duplicate.trigger_event(ev.MergedInto, survivor_id=str(survivor.id), **meta.fields())
    return owners


def unmerge(
    survivor: Customer, duplicate: Customer, meta: Meta, part_size: int = PURCHASES_PER_PART
) -> set[UUID]:
    """Undo :func:`merge`: the survivor gives back exactly what it absorbed and still holds.

    Consents stay as they are on both sides: the duplicate never lost its own, and a withdrawal
    the merge carried over stays on the survivor until the person grants again (giving back a
    grant would widen processing without a decision of theirs). Returns whose personal data
    the survivor's stream now holds (what it gives back, sealed with the owners' keys); parts
    as in :func:`merge`.
    """
    if duplicate.status == Status.ERASED:
        raise CustomerErased(duplicate.id)
    if duplicate.status != Status.MERGED or duplicate.merged_into != str(survivor.id):
        raise InvalidTransition(f"customer {duplicate.id} is not merged into {survivor.id}")
    survivor.require_live()
    absorbed = survivor.absorbed[str(duplicate.id)]
    merged_at = absorbed.get("merged_at")  # absent in records older than business time
    if merged_at is not None and meta.occurred_at < merged_at:
        raise InvalidInput(
            "occurred_at",
            f"{meta.occurred_at.isoformat()} is before the merge it undoes ({merged_at.isoformat()})",
        )
    given_back: Moved = {
        field: (absorbed[field], absorbed.get(f"{field}_owner") or str(duplicate.id))
        for field in ev.Unmerged.PERSONAL
        if absorbed[field] is not None and absorbed[field] == getattr(survivor, field)
    }
    owners = _in_parts(
        survivor,
        ev.Unmerged,
        meta,
        purchases={k: p for k, p in absorbed["purchases"].items() if k in survivor.purchases},
        personal=given_back,
        tags=[t for t in absorbed["tags"] if t in survivor.tags],
        contacts_count=absorbed["contacts_count"],
        part_size=part_size,
        other_id=str(duplicate.id),
        role="survivor",
    )
    duplicate.trigger_event(
        ev.Unmerged,
        other_id=str(survivor.id),
        role="duplicate",
        tags=[],
        purchases={},
        contacts_count=0,
        email=None,
        phone=None,
        part=1,
        parts=1,
        data_owner=None,
        moved=[],
        **meta.fields(),
    )
    return owners


def erase(
    customer: Customer,
    load: Callable[[UUID], Customer],
    copies: Callable[[UUID], list[str]],
    meta: Meta,
    reason: str | None,
) -> list[tuple[Customer, dict[str, str]]]:
    """Erase a person: ``customer`` and every duplicate merged into it, down merge chains.

    A merged duplicate is refused (:class:`CustomerMerged`; the edges name the final
    survivor): its data lives on in the survivor, so the person is erased there, which reaches
    every copy. ``load`` gives the customer of an id (the absorbed duplicates), ``copies`` the
    customers whose streams hold a person's data under their key (``copies_at``). Returns the
    customers erased, ``customer`` first, each with the external ids it held (for the caller to
    release); each gets its own ``customer.erased`` event (same actor, correlation id and
    reason), so each one's key is shredded.
    """
    customer.require_live()
    erased: list[tuple[Customer, dict[str, str]]] = []
    todo = [customer]
    while todo:
        person = todo.pop(0)
        absorbed = sorted(person.absorbed)
        held = dict(person.external_ids)
        person.trigger_event(
            ev.Erased, reason=reason, copies_at=sorted(copies(person.id)), **meta.fields()
        )
        erased.append((person, held))
        for duplicate_id in absorbed:
            duplicate = load(UUID(duplicate_id))
            if duplicate.status == Status.MERGED and duplicate.merged_into == str(person.id):
                todo.append(duplicate)
    return erased
