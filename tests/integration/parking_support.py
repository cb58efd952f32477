"""Helpers for the parking tests: real projectors that fail (or are fixed), writing past the
edge, and reading versions and parked customers back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from commands import messages as m
from commands.service import CommandService, Context
from domain.customer import Customer
from domain.event_base import Meta
from infra.envelope import Envelope
from infra.parking import Parked
from infra.read_tx import Tx
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from projections.framework import Binding, Projector, ensure_schema
from projections.profiles import ProfilesProjector
from projections.registry import all_projectors
from projections.segments import SegmentsProjector

CTX = Context(actor="parking")


def refuse(refused: set[str], envelopes: Sequence[Envelope]) -> None:
    """Fail (as a projector bug would) for the customers named in ``refused``, by id or by
    the name they registered with."""
    for envelope in envelopes:
        if {envelope.customer_key, envelope.data.get("name")} & refused:
            raise ValueError(f"cannot project customer {envelope.customer_key}")


class RefusingProfiles(ProfilesProjector):
    """The profiles projector, made to fail for some customers (:func:`refuse`)."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        refuse(self.refused, envelopes)
        super().apply(tx, envelopes)


class RefusingSegments(SegmentsProjector):
    """The segments projector (fed in log order), made to fail for some customers."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        refuse(self.refused, envelopes)
        super().apply(tx, envelopes)


class NulSafeProfiles(ProfilesProjector):
    """A fixed profiles projector: drops NUL characters PostgreSQL cannot store."""

    def apply(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        super().apply(tx, [_without_nul(e) for e in envelopes])


def _without_nul(envelope: Envelope) -> Envelope:
    data = {k: v.replace("\x00", "") if isinstance(v, str) else v for k, v in envelope.data.items()}
    return replace(envelope, data=data)


def open_read_models(database_url: str) -> ReadStore:
    read_store = open_read_store(database_url)
    ensure_schema(read_store, all_projectors())
    return read_store


def register(service: CommandService, name: str, **fields: Any) -> UUID:
    outcome = service.execute(m.RegisterCustomer(name=name, **fields), CTX)
    assert outcome.customer_id is not None
    return outcome.customer_id


def tag(service: CommandService, customer_id: UUID, value: str) -> int:
    """Tag a customer; returns the event's position."""
    outcome = service.execute(m.TagCustomer(customer_id=customer_id, tag=value), CTX)
    assert outcome.position is not None
    return outcome.position


def register_with_nul(store: EventStore) -> UUID:
    """The issue's ``Nul\\u0000Byte`` name, saved straight through the store (past any edge)."""
    meta = Meta(
        actor="direct",
        correlation_id=str(uuid4()),
        causation_id=None,
        occurred_at=datetime.now(UTC),
    )
    customer = Customer.register(uuid4(), meta, name="Nul\x00Byte")
    store.save(customer)
    customer_id: UUID = customer.id
    return customer_id


def version_of(read_store: ReadStore, projector: Projector, customer_id: UUID) -> int:
    with read_store.transaction() as tx:
        row = tx.fetchone(
            f"SELECT version FROM {projector.versions_table} WHERE customer_id = ?",
            (str(customer_id),),
        )
    return 0 if row is None else int(row[0])


def parked(read_store: ReadStore, projector: Projector) -> list[Parked]:
    """The customers ``projector`` holds back, oldest first."""
    with read_store.transaction(Binding.live(projector).tables) as tx:
        return projector.parking.listing(tx)
