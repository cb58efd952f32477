"""Two writer processes on one customer, on PostgreSQL (issue 16): each keeps the customer in
its cache between units of work, and the other keeps changing it. Optimistic concurrency
still holds: every command lands once, on the stored state, positions stay gapless and the
hash chain verifies."""

from __future__ import annotations

import multiprocessing
from itertools import pairwise
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from uuid import UUID, uuid4

import psycopg
import pytest

from commands import messages as m
from commands.service import CommandService, Context
from infra.readstore import open_read_store
from infra.store import EventStore
from infra.tamper_evidence.seals import seal, verify

pytestmark = pytest.mark.integration
BATCHES, PER_BATCH = 15, 10


def write(
    url: str, customer_id: UUID, name: str, rounds: Barrier, done: Queue[tuple[str, list[str], int]]
) -> None:
    """One writer process: batches of tags and contacts on the shared customer, each batch
    started together with the other writer's (``rounds``), so the two race for every batch and
    each writes on what the other has just changed."""
    store = EventStore(url)
    service = CommandService(store, index_key="k", retries=100)
    context = Context(actor=name)
    outcomes: list[str] = []
    for batch in range(BATCHES):
        rounds.wait(60)
        commands: list[m.Command] = []
        for n in range(PER_BATCH):
            if n % 2:
                commands.append(m.TagCustomer(customer_id=customer_id, tag=f"{name}-{batch}-{n}"))
            else:
                commands.append(
                    m.RecordContact(customer_id=customer_id, channel="email", direction="inbound")
                )
        outcomes += [o.status for o in service.execute_batch(commands, context)]
    done.put((name, outcomes, len(service.cache)))
    store.close()


def test_two_writer_processes_on_one_customer(postgres_url: str) -> None:
    store = EventStore(postgres_url)
    service = CommandService(store, index_key="k")
    customer_id = uuid4()
    service.execute(m.RegisterCustomer(customer_id=customer_id, name="Shared"), Context("t"))
    registered = store.customer(customer_id).version
    spawn = multiprocessing.get_context("spawn")
    rounds, done = spawn.Barrier(2), spawn.Queue()
    writers = [
        spawn.Process(target=write, args=(postgres_url, customer_id, name, rounds, done))
        for name in ("left", "right")
    ]
    for writer in writers:
        writer.start()
    results = {}
    for _ in writers:
        name, outcomes, kept = done.get(timeout=300)
        results[name] = outcomes
        assert kept == 1  # the customer stayed in the writer's cache between its units
    for writer in writers:
        writer.join(30)
        assert writer.exitcode == 0

    total = 2 * BATCHES * PER_BATCH
    assert [s for o in results.values() for s in o] == ["accepted"] * total
    customer = store.customer(customer_id)
    assert customer.version == registered + total  # every command once, none lost
    assert {t for t in customer.tags} == {
        f"{name}-{b}-{n}" for name in results for b in range(BATCHES) for n in range(1, 10, 2)
    }
    actors = [e.actor for e in store.customer_events(customer_id)][registered:]
    switches = sum(a != b for a, b in pairwise(actors))
    # every batch of one writer is followed by the other's (they start each round together)
    assert switches >= BATCHES - 1
    versions = [e.originator_version for e in store.stored_events(customer_id)]
    assert versions == list(range(1, customer.version + 1))
    with psycopg.connect(postgres_url) as db:
        row = db.execute(
            f"SELECT min(notification_id), max(notification_id), count(*) FROM {store.events_table}"
        ).fetchone()
    assert row is not None and row[1] - row[0] + 1 == row[2]  # gapless positions
    read = open_read_store(postgres_url)
    try:
        seal(read, b"k")
        report = verify(read, b"k", store.events_table, customer_id)
        assert report["ok"], report["problems"]
        assert report["events_checked"] == customer.version
    finally:
        read.close()
        store.close()
