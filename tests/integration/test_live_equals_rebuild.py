"""Every read model is a pure function of the event log: what live feeds build equals a rebuild.

Hypothesis writes random histories of commands — registrations (back-dated, with external
ids: registering a held one finds its holder), profile updates (external ids taken, moved,
dropped), tags, purchases (back-dated; some addressed by external id, which a merge makes
answer for its survivor), refunds of recorded orders, campaign targeting, contacts, feedback (back-dated out of order), consent grants and withdrawals, churn and
reactivation, erasures, merges, unmerges, segment (re)definitions with purposes and
time-relative or RFM rules, and refreshes — and lets the live feeds run a little in between:

* **embedded**: the embedded runner feeds every read model from the store's log, in batches of
  a random size; now and then a read model is rebuilt (swapped in) mid-history;
* **full mode**: the read models fed from ``customer.events`` receive the relay's envelopes
  as Kafka hands them over — in order per customer (a customer's key picks its partition),
  partitions interleaved at random, consumed batches redelivered after a "crash", personal
  data opened at consumption — and segments follow the store's log, as ``consume`` runs them.

Merges move their data in parts of one purchase (so a merge of a big customer is several
``duplicate_absorbed`` events), a merge carries the duplicate's consent withdrawals over, and
erasing a survivor erases its duplicates (a recent merge may be undone and its duplicate
erased: the erasure reaches the copies left on the survivor). Pipeline faults come too: a
read model may refuse a customer for a while (a projector bug: the customer is parked for that
read model, its later events wait), a message may be dead-lettered on the way (its customer
is parked in the read models fed from the topic), and re-drives run before and after the fix.

Then, once every fault is fixed and every parked customer re-driven (none may stay parked),
``rebuild_all(verify_only=True)`` — what ``clientele projections verify`` runs — must find
no difference, row for row, in any read model, on SQLite and on a real PostgreSQL. One
history also goes through a real broker (relay and projection consumer, in-process).

CI runs 200 examples on SQLite and 25 on PostgreSQL (about a minute). A larger run multiplies
both (``--hypothesis-show-statistics`` tells how often each of these came up):
``CLIENTELE_PURITY_SCALE=5 .venv/bin/pytest tests/integration/test_live_equals_rebuild.py``
(README, "Tests"). The machinery lives in ``purity_support.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from uuid import uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st

from consumers.embedded import EmbeddedRunner
from consumers.kafka_projection import ProjectionConsumer
from consumers.rebuild import rebuild_all
from consumers.relay import Relay
from infra import kafka
from infra.local_services import KafkaBroker, PostgresCluster
from projections.framework import Projector
from projections.registry import all_projectors
from tests.integration.purity_feeds import PARTITIONS
from tests.integration.purity_support import (
    PURPOSES,
    RULES,
    SHOP_IDS,
    TAGS,
    Databases,
    History,
    Step,
    check,
)

SCALE = float(os.environ.get("CLIENTELE_PURITY_SCALE", "1"))  # more examples: a larger run
LIVE_STEPS = {"feed", "relay", "deliver", "crash", "lose", "rebuild", "refuse", "redrive"}
person = st.integers(0, 5)
days = st.integers(0, 45)
REGISTER = st.tuples(
    st.just("register"),
    st.integers(0, 3),
    st.integers(0, 3),
    st.booleans(),
    st.integers(0, 3),
    st.integers(0, len(SHOP_IDS)),  # an external id, or none
    st.integers(46, 400),  # registered this many days ago
)
STEPS: st.SearchStrategy[Step] = st.one_of(
    REGISTER,
    st.tuples(st.just("update"), person, st.sampled_from(["name", "email", "city", "no-city"])),
    st.tuples(st.sampled_from(["tag", "untag"]), person, st.sampled_from(TAGS)),
    st.tuples(st.just("buy"), person, days, st.sampled_from(["5", "20.50", "60"]), st.booleans()),
    st.tuples(st.just("refund"), st.integers(0, 20)),
    st.tuples(st.just("contact"), person, days),
    st.tuples(st.just("external"), person, st.integers(0, len(SHOP_IDS))),
    st.tuples(st.just("ref-buy"), st.integers(0, len(SHOP_IDS) - 1), days),
    st.tuples(st.just("consent"), person, st.sampled_from(PURPOSES[1:]), st.booleans()),
    st.tuples(st.just("target"), person, st.integers(0, 3), st.booleans()),
    st.tuples(st.just("feedback"), person, st.integers(0, 10)),
    st.tuples(st.sampled_from(["churn", "reactivate"]), person),
    st.tuples(st.just("erase"), person),
    # merges (each strategy object counts once: three of them), and undoing a recent merge,
    # then perhaps erasing the duplicate (its erasure reaches the copies left on the survivor)
    *[st.tuples(st.just("merge"), person, person) for _ in range(3)],
    st.tuples(st.just("unmerge"), person, person),
    st.tuples(st.just("undo"), st.integers(0, 2), st.booleans()),
    st.tuples(
        st.just("define"),
        st.integers(0, 2),
        st.integers(0, len(RULES) - 1),
        st.sampled_from(PURPOSES),
    ),
    st.tuples(st.just("refresh"), st.integers(-5, 40)),
    st.tuples(st.just("feed"), st.integers(1, 3)),
    st.tuples(st.just("relay")),
    st.tuples(
        st.sampled_from(["deliver", "crash"]), st.integers(0, PARTITIONS - 1), st.integers(1, 6)
    ),
    st.tuples(st.just("rebuild"), st.integers(0, 3)),
    st.tuples(st.just("refuse"), person, st.integers(0, 3)),
    st.tuples(st.just("lose"), st.integers(0, PARTITIONS - 1)),
    st.tuples(st.just("redrive"), st.booleans()),
)
HISTORIES = st.tuples(
    st.integers(1, 7),
    st.builds(
        lambda first, then: first + then,
        st.lists(REGISTER, min_size=1, max_size=4),
        st.lists(STEPS, min_size=10, max_size=40),
    ),
)


def examples(default: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis settings for ``default`` examples times the scale, and a test timeout to match."""
    timeout = pytest.mark.timeout(round(300 * max(1.0, SCALE)))
    chosen = settings(
        max_examples=max(1, round(default * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    return lambda test: timeout(chosen(test))


# Pinned histories that once failed (each also runs on PostgreSQL).
# A duplicate's email copied onto its survivor by a merge let segments decide the survivor
# from it (live), until the duplicate was unmerged and erased: a rebuild reads that copy as
# shredded, so the survivor's history of the copy must not outlive the erasure. Found, then shrunk:
PINNED: list[tuple[int, list[Step]]] = [
    (
        4,
        [
            ("register", 0, 3, False, 0, 0, 46),
            ("register", 0, 0, False, 0, 0, 46),
            ("register", 0, 0, False, 0, 0, 46),
            ("relay",),
            ("register", 0, 0, False, 0, 0, 46),
            ("register", 0, 0, False, 0, 1, 46),
            ("register", 0, 0, False, 0, 0, 46),
            ("register", 0, 2, False, 0, 5, 253),
            ("update", 0, "name"),
            ("merge", 0, 4),
            ("update", 0, "name"),
            ("deliver", 0, 1),
            ("deliver", 0, 1),
            ("register", 0, 0, False, 0, 0, 46),
            ("feed", 1),
            ("register", 0, 0, False, 0, 0, 46),
            ("define", 0, 1, None),
            ("lose", 0),
            ("define", 0, 0, None),
            ("update", 0, "name"),
            ("refresh", -2),
            ("register", 0, 0, False, 0, 0, 46),
            ("feed", 1),
            ("erase", 1),
            ("undo", 0, True),
        ],
    ),
    (
        4,
        [
            ("register", 0, 3, False, 0, 0, 46),
            ("register", 0, 0, False, 0, 1, 46),
            ("register", 0, 2, False, 0, 5, 253),
            ("merge", 0, 4),
            ("define", 0, 1, None),
            ("feed", 1),
            ("undo", 0, True),
        ],
    ),
]


def pinned(test: Callable[..., None]) -> Callable[..., None]:
    """``test`` with every history of :data:`PINNED` as an explicit example."""
    for history in reversed(PINNED):
        test = example(history=history)(test)
    return test


@examples(200)
@pinned
@given(history=HISTORIES)
def test_live_equals_rebuild_on_sqlite(history: tuple[int, list[Step]]) -> None:
    home = tempfile.mkdtemp(prefix="clientele-purity-")
    store, embedded, full = (f"sqlite:///{home}/{name}.db" for name in ("s", "e", "f"))
    databases = Databases(store, embedded, full, lambda: shutil.rmtree(home, ignore_errors=True))
    check(databases, history)


@pytest.mark.integration
@examples(25)
@pinned
@given(history=HISTORIES)
def test_live_equals_rebuild_on_postgres(
    postgres: PostgresCluster, history: tuple[int, list[Step]]
) -> None:
    with fresh_databases(postgres, 2) as (store, full):
        check(Databases(store, store, full), history)


@contextmanager
def fresh_databases(postgres: PostgresCluster, count: int) -> Iterator[list[str]]:
    names = [f"p_{uuid4().hex[:12]}" for _ in range(count)]
    try:
        yield [postgres.create_database(name) for name in names]
    finally:
        with psycopg.connect(postgres.database_url("postgres"), autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------- through a real broker


@pytest.mark.integration
@settings(max_examples=1, deadline=None, phases=[Phase.generate], database=None)
@seed(13)
@given(history=st.tuples(st.just(50), st.lists(STEPS, min_size=30, max_size=30)))
def test_live_through_a_real_broker_equals_rebuild(
    broker: KafkaBroker, postgres: PostgresCluster, history: tuple[int, list[Step]]
) -> None:
    """Relay and projection consumer in-process on tansu; segments follow the store's log."""
    with fresh_databases(postgres, 1) as (url,), ExitStack() as stack:
        run = History(Databases(url, url, url), 50, stack)
        run.run([step for step in history[1] if step[0] not in LIVE_STEPS])
        topics = kafka.Topics(f"purity{uuid4().hex[:6]}.")
        kafka.ensure_topics(broker.bootstrap, topics.all(), partitions=PARTITIONS)
        producer = kafka.producer(broker.bootstrap)
        stack.callback(producer.close, 10)
        relay = Relay(run.feed, producer, topics.events, run.read_stores[1])
        relay.stop()  # a caller's catch-up still goes to the head (it stopped after one batch)
        published = len(run.feed.read_sealed(0, 1_000_000))
        assert relay.catch_up() == published
        group = f"purity-{uuid4().hex[:6]}"
        from_topic = [p for p in all_projectors() if not p.log_order]
        consumer = ProjectionConsumer(
            kafka.consumer(broker.bootstrap, group),
            producer,
            topic=topics.events,
            group=group,
            read_store=run.read_stores[0],
            projectors=from_topic,
            personal=run.store.personal,
            feed=run.feed,
        )
        consumer.subscribe()
        stack.callback(consumer.consumer.close)
        deadline = time.monotonic() + 120
        while consumer.applied < published and time.monotonic() < deadline:
            consumer.poll_once(timeout_ms=500)
        assert consumer.applied >= published
        log_ordered: list[Projector] = [p for p in all_projectors() if p.log_order]
        EmbeddedRunner(run.feed, run.read_stores[0], log_ordered).catch_up()
        results = rebuild_all(run.feed, run.read_stores[0], all_projectors(), verify_only=True)
        assert {r.name: r.differences for r in results if r.differences} == {}
