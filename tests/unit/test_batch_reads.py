"""A batch reads the store a fixed number of times, however many commands it holds: what its
commands name (customers, external ids, emails) is prefetched together, never one by one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from commands import messages as m
from commands import unit_of_work
from commands.service import CommandService, Context
from infra.bulk_load import load_many

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
