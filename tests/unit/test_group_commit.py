"""Group commit: batches from concurrent callers share store transactions, outcomes stay theirs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from uuid import UUID, uuid4

import pytest

from commands import messages as m
from commands.service import CommandService, Context, Outcome
from domain import errors
from infra.store import EventStore

CALLERS = 8


def _slow_first_commit(service: CommandService, release: threading.Event) -> list[int]:
    """Record every group's newest position; the first commit waits for ``release``."""
    commits: list[int] = []

    def on_commit(position: int) -> None:
        commits.append(position)
        if len(commits) == 1:
            release.wait(10)

    service.on_commit = on_commit
    return commits


def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "callers did not get there in 10 s"
        time.sleep(0.005)


def _hold_first_then_queue(
    service: CommandService, commits: list[int], threads: list[threading.Thread]
) -> None:
    """Start one caller and hold its commit; start the rest, wait until they all queue."""
    threads[0].start()
    _until(lambda: len(commits) == 1)
    for thread in threads[1:]:
        thread.start()
    _until(lambda: len(service._queue) == len(threads) - 1)


def test_concurrent_batches_share_commits_and_keep_their_outcomes(
    service: CommandService, store: EventStore
) -> None:
    release = threading.Event()
    commits = _slow_first_commit(service, release)
    batches = {
        n: [m.RegisterCustomer(customer_id=uuid4(), name=f"Caller {n} #{i}") for i in range(3)]
        for n in range(CALLERS)
    }
    batches[3].append(m.RegisterCustomer(customer_id=batches[3][0].customer_id, name="Twin"))
    results: dict[int, list[Outcome]] = {}

    def call(n: int) -> None:
        results[n] = service.execute_batch(batches[n], Context(actor=f"caller-{n}"))

    threads = [threading.Thread(target=call, args=(n,)) for n in range(CALLERS)]
    _hold_first_then_queue(service, commits, threads)
    release.set()
    for thread in threads:
        thread.join(10)

    assert len(commits) == 2  # the first caller's batch alone, then everyone who queued
    assert sorted(results) == list(range(CALLERS))
    for n, batch in batches.items():
        outcomes = results[n]
        assert [o.customer_id for o in outcomes if o.status == "accepted"] == [
            c.customer_id for c in batch[:3]
        ]
        for command in batch[:3]:
            assert isinstance(command.customer_id, UUID)
            event = next(store.customer_events(command.customer_id))
            assert event.actor == f"caller-{n}"  # each caller's context, not the leader's
    assert isinstance(results[3][3].problem, errors.DomainError)  # its own rejection only


def test_a_failing_group_fails_every_caller_in_it(service: CommandService) -> None:
    release = threading.Event()
    commits = _slow_first_commit(service, release)
    calls = 0
    original = service._execute

    def execute_then_break(items: list[tuple[m.Command, Context]]) -> list[Outcome]:
        nonlocal calls
        calls += 1
        if calls == 2:  # the queued group's transaction
            raise ConnectionError("store went away")
        return original(items)

    service._execute = execute_then_break  # type: ignore[method-assign,assignment]
    errors_seen: list[BaseException] = []

    def call() -> None:
        try:
            service.execute_batch([m.RegisterCustomer(name="Ada")], Context(actor="t"))
        except ConnectionError as error:
            errors_seen.append(error)

    threads = [threading.Thread(target=call) for _ in range(4)]
    _hold_first_then_queue(service, commits, threads)
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(errors_seen) == 3  # the queued group failed together; the first one committed
    # and the service still works afterwards: nobody is left holding the lead
    outcome = service.execute(m.RegisterCustomer(name="Bob"), Context(actor="t"))
    assert outcome.status == "accepted"


@pytest.mark.parametrize("limit", [1, 4])
def test_groups_respect_the_command_limit(store: EventStore, limit: int) -> None:
    service = CommandService(store, index_key="k", group_limit=limit)
    release = threading.Event()
    commits = _slow_first_commit(service, release)

    def call() -> None:
        service.execute_batch([m.RegisterCustomer(name="Ada")] * 2, Context(actor="t"))

    threads = [threading.Thread(target=call) for _ in range(5)]
    _hold_first_then_queue(service, commits, threads)
    release.set()
    for thread in threads:
        thread.join(10)
    # a batch bigger than the limit still runs (alone); otherwise groups stay within it
    assert len(commits) == (5 if limit == 1 else 3)
