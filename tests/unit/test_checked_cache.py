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
from consumers.store_feed import StoreFeed
from domain.customer import Customer
from domain.events import DuplicateAbsorbed
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


def restored_under_a_writer(path: Path) -> tuple[EventStore, CommandService, UUID, int]:
    """A writer keeping a customer tagged "a" then "b" (at version ``kept``), then the store
    at ``path`` put back to before its newest event (a restore): (store, service, customer,
    kept version)."""
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
    return store, service, customer_id, kept


def test_a_kept_version_the_store_does_not_hold_is_loaded_afresh(tmp_path: Path) -> None:
    """A store put back to an earlier state (a restore) under a running writer: the kept
    customer is newer than the store. Writing on it would leave a gap in its versions and a
    broken link in its chain; it is dropped and the customer loaded from the store."""
    path = tmp_path / "store.db"
    store, service, customer_id, kept = restored_under_a_writer(path)
    outcome = service.execute(m.TagCustomer(customer_id=customer_id, tag="c"), CTX)
    assert outcome.version == kept  # written right after what the store holds
    customer = store.customer(customer_id)
    assert isinstance(customer, Customer) and customer.tags == ["a", "c"]
    versions = [e.originator_version for e in store.stored_events(customer_id)]
    assert versions == list(range(1, kept + 1))
    store.close()


PHONE = "+4930901820"


@pytest.fixture
def two_writers(tmp_path: Path) -> Iterator[tuple[EventStore, EventStore]]:
    """Two processes on one store (each with its own data-key cache)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    here, elsewhere = EventStore(url), EventStore(url)
    yield here, elsewhere
    here.close()
    elsewhere.close()


def copy_erased_elsewhere(service: CommandService, elsewhere: EventStore) -> tuple[UUID, UUID]:
    """(survivor, duplicate): the survivor's stream holds the duplicate's phone sealed with
    the duplicate's key, which ``service``'s process holds (it wrote the phone); then another
    writer erases the duplicate, shredding the key. Returns once the erasure is stored."""
    survivor, duplicate = register(service), register(service)
    service.execute(m.UpdateProfile(customer_id=duplicate, changes={"phone": PHONE}), CTX)
    service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
    service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
    assert absorbed_phone(service.store, survivor) == PHONE
    CommandService(elsewhere, index_key="k").execute(m.EraseCustomer(customer_id=duplicate), CTX)
    return survivor, duplicate


def absorbed_phone(store: EventStore, survivor: UUID) -> Any:
    """The duplicate's phone in the survivor's copy, opened with the process's key cache."""
    [copy] = [r for r in store.stored_events(survivor) if "DuplicateAbsorbed" in r.topic]
    return store.mapper.to_domain_event(copy).phone  # type: ignore[attr-defined]


@pytest.mark.parametrize("cache_bytes", [0, 64 * 2**20])
def test_another_writers_erasure_forgets_the_erased_persons_data_key(
    two_writers: tuple[EventStore, EventStore], cache_bytes: int
) -> None:
    """Writer A's next unit forgets the key shredded by writer B first, cache on or off: else
    the survivor's copy of the erased person's phone still opens with A's cached key."""
    store, elsewhere = two_writers
    service = CommandService(store, index_key="k", cache_bytes=cache_bytes)
    other = register(service)
    survivor, duplicate = copy_erased_elsewhere(service, elsewhere)
    service.execute(m.TagCustomer(customer_id=other, tag="unrelated"), CTX)
    assert absorbed_phone(store, survivor) is None
    assert store.footprints.get(duplicate) is None


@pytest.mark.parametrize("reader", ["history", "feed"])
def test_readers_forget_a_key_shredded_by_another_writer(
    two_writers: tuple[EventStore, EventStore], reader: str
) -> None:
    """The same for the other long-lived readers: the store's reads (the API's history) and
    the feed read models are fed from (the erasure's envelope forgets the key)."""
    store, elsewhere = two_writers
    survivor, _ = copy_erased_elsewhere(CommandService(store, index_key="k"), elsewhere)
    if reader == "history":
        absorbed = [e for _, e in store.history(survivor) if isinstance(e, DuplicateAbsorbed)]
        assert [e.phone for e in absorbed] == [None]
    else:
        feed = StoreFeed(store)
        [sealed] = [e for e in feed.read_sealed(0, 1000) if e.type == DuplicateAbsorbed.TYPE]
        feed.read(0, 1000)  # the whole log, the erasure included (after the copy: it opens)
        assert store.personal.open_envelope(sealed).data.get("phone") is None


def test_a_store_rewritten_to_the_kept_version_with_other_events_is_loaded_afresh(
    tmp_path: Path,
) -> None:
    """A restore to an earlier version, then new writes (another writer's) reaching the kept
    version again: the version is stored, but not the event the customer was kept at. Its kept
    state ("b") must not be used; the customer is loaded from the store ("x")."""
    path = tmp_path / "store.db"
    store, service, customer_id, kept = restored_under_a_writer(path)
    other_store = EventStore(f"sqlite:///{path}")  # the other writer: writes the version again
    CommandService(other_store, index_key="k").execute(
        m.TagCustomer(customer_id=customer_id, tag="x"), CTX
    )
    other_store.close()
    assert [e.originator_version for e in store.stored_events(customer_id)][-1] == kept
    outcome = service.execute(m.TagCustomer(customer_id=customer_id, tag="c"), CTX)
    assert outcome.version == kept + 1
    customer = store.customer(customer_id)
    assert isinstance(customer, Customer) and customer.tags == ["a", "x", "c"]
    decided_on, _ = service.cache.take([customer_id])[customer_id]
    assert vars(decided_on) == vars(customer)  # not ["a", "b", "c"]
    store.close()
