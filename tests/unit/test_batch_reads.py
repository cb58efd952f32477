"""A batch reads the store a fixed number of times, however many commands it holds: what its
commands name (customers, external ids, emails) is prefetched together, never one by one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from commands import messages as m
from commands import unit_of_work
from commands.service import CommandService, Context, Outcome
from infra.bulk_load import load_many
from infra.store import EventStore

CTX = Context(actor="reads")


def registrations(start: int, count: int) -> list[m.Command]:
    return [
        m.RegisterCustomer(
            name=f"Customer {n}",
            email=f"Customer{n}@Example.com",
            external_ids={"shop": f"{n:05d}"},
        )
        for n in range(start, start + count)
    ]


def purchases(start: int, count: int) -> list[m.Command]:
    return [
        m.RecordPurchase(
            customer_ref=m.CustomerRef(system="shop", id=f"{n:05d}"),
            order_id=f"o{n}",
            amount="9.99",
            currency="EUR",
        )
        for n in range(start, start + count)
    ]


def reads_per_batch(
    service: CommandService,
    monkeypatch: pytest.MonkeyPatch,
    batch: Callable[[int, int], list[m.Command]],
) -> list[int]:
    """Store reads of a batch of 10 and of a batch of 100 commands."""
    calls = [0]
    original = load_many

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(unit_of_work, "load_many", counting)
    counts = []
    for start, size in ((0, 10), (10, 100)):
        before = calls[0]
        outcomes = service.execute_batch(batch(start, size), CTX)
        assert {o.status for o in outcomes} == {"accepted"}
        counts.append(calls[0] - before)
    monkeypatch.undo()
    return counts


def test_registrations_and_purchases_by_external_id_read_the_store_in_bulk(
    service: CommandService, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, large = reads_per_batch(service, monkeypatch, registrations)
    assert small == large <= 2  # customers and index rows, then the ids' holders
    small, large = reads_per_batch(service, monkeypatch, purchases)
    assert small == large <= 2


def backend_reads(
    store: EventStore,
    service: CommandService,
    monkeypatch: pytest.MonkeyPatch,
    commands: list[m.Command],
) -> tuple[int, list[Outcome]]:
    """How many reads of the store's backend (loads and position look-ups) one batch of
    ``commands`` makes, and its outcomes."""
    calls = [0]
    for name in ("latest", "positioned", "positions"):
        original = getattr(store.backend, name)

        def counting(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            calls[0] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(store.backend, name, counting)
    outcomes = service.execute_batch(commands, CTX)
    monkeypatch.undo()
    return calls[0], outcomes


def test_replayed_and_no_op_commands_find_their_positions_in_bulk(
    store: EventStore, service: CommandService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands that record nothing (idempotent replays, a registration whose external id is
    held already) answer with the positions of earlier events: looked up together."""
    reads = []
    for start, size in ((0, 10), (10, 100)):
        keyed = [
            replace(c, idempotency_key=f"k-{start + n}")
            for n, c in enumerate(registrations(start, size))
        ]
        first = service.execute_batch(keyed, CTX)
        twins = [replace(c, idempotency_key=None) for c in registrations(start, size)]
        count, again = backend_reads(store, service, monkeypatch, keyed + twins)
        reads.append(count)
        assert all(o.replayed for o in again[:size]) and all(o.existing for o in again[size:])
        assert [o.position for o in again] == [o.position for o in first] * 2 != [None] * 2 * size
    small, large = reads
    assert small == large <= 4  # load what the commands name, their holders, then positions
