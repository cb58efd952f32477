"""The write side's customer cache is checked, never trusted (issue 16): a unit of work never
re-folds a kept customer's history, yet never decides on a stale state, and no erased
person's data outlives the erasure in it, whoever erased them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from commands import messages as m
from commands.service import CommandService, Context
from domain.customer import Customer
from infra.store import EventStore

CTX = Context(actor="cache-test")


@pytest.fixture
def store() -> Iterator[EventStore]:
    store = EventStore("memory://", snapshot_interval=50)
    yield store
    store.close()


def register(service: CommandService, **fields: Any) -> UUID:
    customer_id = uuid4()
    service.execute(m.RegisterCustomer(customer_id=customer_id, name="Ann", **fields), CTX)
    return customer_id


def test_a_small_customer_is_not_folded_again_by_the_next_unit(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, customers whose load read less than 64 KiB were folded from the store by every
    unit of work: every past event opened again (39 % of the writer's CPU on the mix)."""
    service = CommandService(store, index_key="k")
    customer_id = register(service, email="ann@example.com")
    for n in range(5):
        service.execute(m.TagCustomer(customer_id=customer_id, tag=f"t{n}"), CTX)
    opened: list[StoredEvent] = []
    original = store.mapper.to_domain_event

    def counting(stored: StoredEvent) -> Any:
        opened.append(stored)
        return original(stored)

    monkeypatch.setattr(store.mapper, "to_domain_event", counting)
    service.execute(m.TagCustomer(customer_id=customer_id, tag="vip"), CTX)
    assert [e for e in opened if e.originator_id == customer_id] == []
    assert store.customer(customer_id).tags[-1] == "vip"


def test_a_customer_erased_by_another_writer_leaves_the_cache_at_the_next_unit(
    store: EventStore,
) -> None:
    service, elsewhere = CommandService(store, index_key="k"), CommandService(store, index_key="k")
    erased, other = register(service, email="gone@example.com"), register(service)
    service.execute(m.TagCustomer(customer_id=erased, tag="kept"), CTX)
    elsewhere.execute(m.EraseCustomer(customer_id=erased), CTX)
    service.execute(m.TagCustomer(customer_id=other, tag="unrelated"), CTX)
    assert service.cache.take([erased]) == {}  # its clear data is gone from this process too
    assert service.cache.take([other]) != {}


def test_the_holder_of_an_erased_persons_copies_leaves_the_cache_of_every_writer(
    store: EventStore,
) -> None:
    """The survivor of an unmerged merge holds the duplicate's data under the duplicate's key:
    erased in another process, it changes how the survivor's events read without an event of
    the survivor's."""
    service, elsewhere = CommandService(store, index_key="k"), CommandService(store, index_key="k")
    survivor, duplicate, other = register(service), register(service), register(service)
    service.execute(m.UpdateProfile(customer_id=duplicate, changes={"phone": "+4930901820"}), CTX)
    service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
    service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
    service.execute(m.TagCustomer(customer_id=survivor, tag="kept"), CTX)
    elsewhere.execute(m.EraseCustomer(customer_id=duplicate), CTX)
    service.execute(m.TagCustomer(customer_id=other, tag="unrelated"), CTX)
    assert service.cache.take([survivor, duplicate]) == {}


def test_a_customer_changed_elsewhere_is_decided_on_its_stored_state(store: EventStore) -> None:
    service, elsewhere = CommandService(store, index_key="k"), CommandService(store, index_key="k")
    customer_id = register(service)
    service.execute(m.TagCustomer(customer_id=customer_id, tag="a"), CTX)
    elsewhere.execute(m.EraseCustomer(customer_id=customer_id), CTX)
    with pytest.raises(Exception, match="erased"):  # decided on the erasure, not the kept state
        service.execute(m.TagCustomer(customer_id=customer_id, tag="b"), CTX)
    assert "b" not in store.customer(customer_id).tags


def test_a_kept_version_the_store_does_not_hold_is_loaded_afresh(tmp_path: Path) -> None:
    """A store put back to an earlier state (a restore) under a running writer: the kept
    customer is newer than the store. Writing on it would leave a gap in its versions and a
    broken link in its chain; it is dropped and the customer loaded from the store."""
    path = tmp_path / "store.db"
    store = EventStore(f"sqlite:///{path}")
    service = CommandService(store, index_key="k")
    customer_id = register(service)
    service.execute(m.TagCustomer(customer_id=customer_id, tag="a"), CTX)
    service.execute(m.TagCustomer(customer_id=customer_id, tag="b"), CTX)
    kept = store.customer(customer_id).version
    with sqlite3.connect(path) as db:  # the restore: the newest event is gone
        for table in (store.events_table, "event_hashes"):
            db.execute(
                f"DELETE FROM {table} WHERE originator_id = ? AND originator_version = ?",
                (customer_id.hex, kept),
            )
    outcome = service.execute(m.TagCustomer(customer_id=customer_id, tag="c"), CTX)
    assert outcome.version == kept  # written right after what the store holds
    customer = store.customer(customer_id)
    assert isinstance(customer, Customer) and customer.tags == ["a", "c"]
    versions = [e.originator_version for e in store.stored_events(customer_id)]
    assert versions == list(range(1, kept + 1))
    store.close()
