"""A value's first holder is recorded in the event that opens its reservation row: one event,
not ``Opened`` then ``Reserved``; rows stored the old way keep working."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from commands.unit_of_work import UnitOfWork
from domain.errors import EmailTaken, ExternalIdTaken
from domain.indexes import Reservation
from infra.store import EventStore

CTX = Context(actor="claims")
KEY = "claims-key"


@pytest.fixture
def store() -> EventStore:
    return EventStore("memory://")


def rows(store: EventStore, reservation_id: UUID) -> list[str]:
    return [e.topic.rpartition(".")[2] for e in store.recorder.select_events(reservation_id)]


def test_a_registration_claims_its_email_and_external_id_in_one_event_each(
    store: EventStore,
) -> None:
    service = CommandService(store, index_key=KEY)
    uow = UnitOfWork(store, KEY.encode())
    ada = service.execute(
        m.RegisterCustomer(name="Ada", email="Ada@Example.com", external_ids={"shop": "7"}), CTX
    ).customer_id
    assert rows(store, uow.email_id("ada@example.com")) == ["Claimed"]
    assert rows(store, uow.external_id("shop", "7")) == ["Claimed"]
    assert store.head() == 3  # the customer, two index rows
    with pytest.raises(EmailTaken):
        service.execute(m.RegisterCustomer(name="Eve", email="ada@example.com"), CTX)
    again = service.execute(m.RegisterCustomer(name="Eve", external_ids={"shop": "7"}), CTX)
    assert (again.existing, again.customer_id) == (True, ada)  # its holder answers
    with pytest.raises(ExternalIdTaken):
        eve = service.execute(m.RegisterCustomer(name="Eve"), CTX).customer_id
        service.execute(
            m.UpdateProfile(customer_id=eve, changes={"external_ids": {"shop": "7"}}), CTX
        )
    loaded = UnitOfWork(store, KEY.encode())
    assert loaded.external_holder("shop", "7") == ada


def test_a_released_row_is_reserved_again_and_an_old_row_still_counts(store: EventStore) -> None:
    service = CommandService(store, index_key=KEY)
    uow = UnitOfWork(store, KEY.encode())
    ada = service.execute(m.RegisterCustomer(name="Ada", email="ada@example.com"), CTX)
    assert ada.customer_id is not None
    service.execute(
        m.UpdateProfile(customer_id=ada.customer_id, changes={"email": "ada@example.org"}), CTX
    )
    eve = service.execute(m.RegisterCustomer(name="Eve", email="ada@example.com"), CTX)
    assert rows(store, uow.email_id("ada@example.com")) == ["Claimed", "Released", "Reserved"]
    assert rows(store, uow.email_id("ada@example.org")) == ["Claimed"]
    # a row stored before claims existed: opened, then reserved
    old = Reservation.open(uow.email_id("bob@example.com"))
    holder = uuid4()
    old.reserve(holder, lambda other: EmailTaken("bob@example.com", other))
    store.save(old)
    with pytest.raises(EmailTaken):
        service.execute(m.RegisterCustomer(name="Bob", email="bob@example.com"), CTX)
    assert UnitOfWork(store, KEY.encode()).email_reservation("bob@example.com").holder == holder
    assert eve.status == "accepted"


def test_a_refused_registration_leaves_no_claim(store: EventStore) -> None:
    service = CommandService(store, index_key=KEY)
    uow = UnitOfWork(store, KEY.encode())
    outcomes = service.execute_batch(
        [
            m.RegisterCustomer(name="Ada", email="ada@example.com", lifecycle_stage="churned"),
            m.RegisterCustomer(name="Eve", email="eve@example.com"),
            m.RegisterCustomer(name="Bob", email="bob@example.com", lifecycle_stage="churned"),
            m.RegisterCustomer(name="Bob", email="bob@example.com"),  # the rolled-back claim
        ],
        CTX,
    )
    assert [o.status for o in outcomes] == ["rejected", "accepted", "rejected", "accepted"]
    assert rows(store, uow.email_id("ada@example.com")) == []
    assert rows(store, uow.email_id("eve@example.com")) == ["Claimed"]
    assert rows(store, uow.email_id("bob@example.com")) == ["Claimed"]
    holder = UnitOfWork(store, KEY.encode()).email_reservation("bob@example.com").holder
    assert holder == outcomes[3].customer_id
