"""External ids on the command side: resolving a ``customer_ref``, finding who already answers
for a registration's ids, and keeping the index rows in step with a customer's ids.

Every lookup goes through the store's index rows inside the unit of work (never a read model):
anything that moves an id also appends to its holder's stream, so a command resolved against a
stale holder collides on that stream and is retried against fresh state. An id held by a
merged customer answers for the FINAL survivor of its merge chain.
"""

from __future__ import annotations

from functools import partial
from uuid import UUID

from commands import messages as m
from commands.unit_of_work import UnitOfWork
from domain.customer import Customer
from domain.errors import CustomerRefNotFound, ExternalIdsDisagree, ExternalIdTaken, InvalidInput
from domain.external_ids import normalise_external_ids, normalise_ref, ref_text


def resolve_ref(uow: UnitOfWork, ref: m.CustomerRef) -> Customer:
    """The customer who answers for an external id: its holder, or the final survivor of the
    holder's merge chain; :class:`CustomerRefNotFound` if nobody holds it."""
    system, external_id = normalise_ref(ref.system, ref.id, "customer_ref")
    holder = uow.external_holder(system, external_id)
    if holder is None:
        raise CustomerRefNotFound(system, external_id)
    return uow.final_survivor(uow.customer(holder))


def registration_ids(command: m.RegisterCustomer) -> dict[str, str]:
    """The external ids of a registration: ``external_ids`` and ``customer_ref`` together."""
    ids = {k: i for k, i in normalise_external_ids(command.external_ids, patch=False).items() if i}
    if command.customer_ref is not None:
        ref = command.customer_ref
        system, external_id = normalise_ref(ref.system, ref.id, "customer_ref")
        if ids.setdefault(system, external_id) != external_id:
            raise InvalidInput("customer_ref", f"names another {system} id than external_ids")
    return dict(sorted(ids.items()))


def registered_before(uow: UnitOfWork, ids: dict[str, str], wanted: UUID | None) -> UUID | None:
    """The live customer who already answers for the registration's external ids, if any;
    ids answered for by different customers are :class:`ExternalIdsDisagree`, and one held by
    another customer than the ``customer_id`` asked for is :class:`ExternalIdTaken`."""
    found: dict[tuple[str, str], Customer] = {}
    for system, external_id in ids.items():
        holder = uow.external_holder(system, external_id)
        if holder is not None:
            found[system, external_id] = uow.final_survivor(uow.customer(holder))
    if not found:
        return None
    if len({customer.id for customer in found.values()}) > 1:
        raise ExternalIdsDisagree({ref_text(*ref): c.id for ref, c in found.items()})
    (system, external_id), customer = next(iter(found.items()))
    if wanted is not None and wanted != customer.id:
        raise ExternalIdTaken(system, external_id, customer.id)
    customer.require_live()
    return customer.id


def move_ids(uow: UnitOfWork, customer: UUID, old: dict[str, str], new: dict[str, str]) -> None:
    """Move the index rows from ``old`` to ``new`` external ids of ``customer``: new ones are
    reserved first (one taken by someone else is :class:`ExternalIdTaken`), then old released."""
    for system in sorted(old.keys() | new.keys()):
        before, after = old.get(system), new.get(system)
        if before == after:
            continue
        if after is not None:
            holder = uow.external_holder(system, after)
            if holder not in (None, customer):
                survivor = uow.final_survivor(uow.customer(holder))
                raise ExternalIdTaken(system, after, survivor.id)
            uow.reserve(
                uow.external_id(system, after), customer, partial(ExternalIdTaken, system, after)
            )
        if before is not None:
            uow.external_reservation(system, before).release(customer)
