"""The erasure watch (``EventStore.forget_erased``) across the threads of one process: no
thread reads with a data key shredded elsewhere once its look has returned, and a look taken
by one reader does not hide an erasure from the write side's customer cache."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from commands import messages as m
from commands.service import CommandService, Context
from infra.store import EventStore

CTX = Context(actor="erasure-watch-test")
EMAIL = "gone@example.com"


def register(service: CommandService, **fields: Any) -> UUID:
    customer_id = uuid4()
    service.execute(m.RegisterCustomer(customer_id=customer_id, name="Ann", **fields), CTX)
    return customer_id


@pytest.fixture
def two_writers(tmp_path: Path) -> Iterator[tuple[EventStore, EventStore]]:
    """Two processes on one store (each with its own data-key cache)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    here, elsewhere = EventStore(url), EventStore(url)
    yield here, elsewhere
    here.close()
    elsewhere.close()


def registered_email(store: EventStore, customer_id: UUID) -> Any:
    """The email of the customer's registration, opened with the process's key cache."""
    registered = store.stored_events(customer_id)[0]
    return store.mapper.to_domain_event(registered).email  # type: ignore[attr-defined]


def test_a_second_thread_does_not_read_before_the_first_has_forgotten_the_keys(
    two_writers: tuple[EventStore, EventStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the first look marked the erasures seen, then forgot their keys: a second
    thread's look returned at once, and it opened the erased person's data with the key still
    cached. The first look is held inside the forgetting (an injected pause) while the second
    looks and reads."""
    store, elsewhere = two_writers
    customer_id = register(CommandService(store, index_key="k"), email=EMAIL)
    assert registered_email(store, customer_id) == EMAIL  # the key is cached in this process
    CommandService(elsewhere, index_key="k").execute(m.EraseCustomer(customer_id=customer_id), CTX)

    forgetting, release = threading.Event(), threading.Event()
    forget = store.data_keys.forget

    def paused_forget(customer_ids: Iterable[str]) -> None:
        wanted = list(customer_ids)
        if wanted:  # the look that found the erasure
            forgetting.set()
            release.wait(10)
        forget(wanted)

    monkeypatch.setattr(store.data_keys, "forget", paused_forget)
    first = threading.Thread(target=store.forget_erased)
    first.start()
    assert forgetting.wait(10)
    read_by_second: list[Any] = []

    def second_reader() -> None:
        store.forget_erased()
        read_by_second.append(registered_email(store, customer_id))

    second = threading.Thread(target=second_reader)
    second.start()
    second.join(0.5)  # before the fix it had read by now; after it, it waits for the first
    release.set()
    first.join(10)
    second.join(10)
    assert read_by_second == [None]


def test_a_readers_look_does_not_hide_an_erasure_from_the_customer_cache() -> None:
    """Before, the erasures were handed to whichever caller looked first: a read of the API
    (time travel, history) looking before the next unit of work left the holder of the erased
    person's copies in the write side's cache, their data in clear."""
    store = EventStore("memory://", snapshot_interval=50)
    service, elsewhere = CommandService(store, index_key="k"), CommandService(store, index_key="k")
    survivor, duplicate, other = register(service), register(service), register(service)
    service.execute(m.UpdateProfile(customer_id=duplicate, changes={"phone": "+4930901820"}), CTX)
    service.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
    service.execute(m.UnmergeCustomers(customer_id=survivor, duplicate_id=duplicate), CTX)
    service.execute(m.TagCustomer(customer_id=survivor, tag="kept"), CTX)
    elsewhere.execute(m.EraseCustomer(customer_id=duplicate), CTX)
    store.customer(other)  # a reader looks first
    service.execute(m.TagCustomer(customer_id=other, tag="unrelated"), CTX)
    assert service.cache.take([survivor, duplicate]) == {}
    store.close()


def test_a_look_with_the_head_unmoved_is_one_query(
    two_writers: tuple[EventStore, EventStore],
) -> None:
    """The erasures are read only when the log has moved since the last look."""
    store, elsewhere = two_writers
    customer_id = register(CommandService(elsewhere, index_key="k"))
    CommandService(elsewhere, index_key="k").execute(m.EraseCustomer(customer_id=customer_id), CTX)
    store.forget_erased()
    assert store.newest_erasure == elsewhere.head()
    reads: list[int] = []
    select = store.recorder.select_notifications

    def counting(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return select(*args, **kwargs)

    store.recorder.select_notifications = counting  # type: ignore[method-assign]
    store.forget_erased()
    assert reads == []
