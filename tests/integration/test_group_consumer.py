"""A consumer-group member stuck outside its group is rebuilt and consumes again (issue 17:
after a broker kill, kafka-python 3.0.12's coordinator lookup could stay pending for good, and
`ingest` or `consume` never consumed again without a restart).

This module starts its own broker, so it can SIGKILL and restart it (tansu with memory storage
loses every topic) without disturbing other tests.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.future import Future

from infra import kafka
from infra.kafka_group import GroupConsumer, group_consumer
from infra.local_services import KafkaBroker
from tests.integration.kafka_support import private_broker

pytestmark = pytest.mark.integration
PARTITIONS = 3
# A replaced member that could not leave holds the next join up to the session timeout (the
# tests' 6 s, tests/conftest.py), and tansu holds a first join for half of it: 2.5 x the session
STALL_SECONDS = 15.0


@pytest.fixture(scope="module")
def own_broker() -> Iterator[KafkaBroker]:
    """A broker of this module only: a test kills and restarts it."""
    with private_broker("group") as server:
        yield server


def send(broker: KafkaBroker, topic: str, value: bytes) -> None:
    """One record on ``topic`` (a producer of its own: the broker may have restarted)."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        producer.send(topic, key=value, value=value).get(timeout=10)
    finally:
        producer.close(timeout=5)


def consumes(
    member: KafkaConsumer | GroupConsumer, broker: KafkaBroker, topic: str, within: float = 60
) -> bool:
    """Whether ``member`` receives a record sent now within ``within`` s (one every 5 s)."""
    deadline, next_send, tag = time.monotonic() + within, 0.0, uuid4().hex.encode()
    while time.monotonic() < deadline:
        if time.monotonic() >= next_send:
            next_send = time.monotonic() + 5
            try:
                send(broker, topic, tag)
            except Exception:  # the broker is still coming back: try again
                next_send = time.monotonic() + 1
        batches: dict[Any, list[Any]] = member.poll(timeout_ms=500)
        if any(r.value == tag for rs in batches.values() for r in rs):
            return True
    return False


def lose_coordinator(member: KafkaConsumer) -> None:
    """Put ``member`` in the state issue 17 found it in: the coordinator marked dead and its
    lookup (FindCoordinator) pending on a future that never completes."""
    coordinator = member._coordinator  # kafka-python's own state, as found
    with coordinator._lock:
        coordinator._find_coordinator_future = Future()
        coordinator.coordinator_dead("issue 17: the broker was killed")


def consuming_plain_member(broker: KafkaBroker, topic: str, attempts: int = 3) -> KafkaConsumer:
    """A plain (unwatched) member of a fresh group that has received a record on ``topic``.

    Without the watch, a first join can itself fall into the state issue 17 describes (CI saw
    one consume nothing for 60 s under load): such a member is closed and a new one, in a new
    group, tried, at most ``attempts`` times; then the test fails.
    """
    for _ in range(attempts):
        plain = kafka.consumer(broker.bootstrap, f"g-{uuid4().hex[:8]}")
        plain.subscribe([topic])
        if consumes(plain, broker, topic):
            return plain
        plain.close(timeout_ms=5000)
    pytest.fail(f"no plain member consumed from {topic} in {attempts} fresh groups")


def member(broker: KafkaBroker, topic: str, group: str) -> GroupConsumer:
    made = group_consumer(broker.bootstrap, group, stall_seconds=STALL_SECONDS)
    made.subscribe([topic])
    return made


def test_a_member_whose_coordinator_lookup_never_completes_is_rebuilt(
    own_broker: KafkaBroker,
) -> None:
    topic, group = f"stuck-{uuid4().hex[:8]}", f"g-{uuid4().hex[:8]}"
    kafka.ensure_topics(own_broker.bootstrap, [topic], PARTITIONS)
    watched = member(own_broker, topic, group)
    try:
        # under load the first join may itself outlast the stall bound and be rebuilt (as it
        # would be in production), and a rebuild during a join delays the next one: the first
        # record gets a longer (bounded) wait; from here on the member is in its group
        assert consumes(watched, own_broker, topic, within=4 * STALL_SECONDS)
        settled = watched.rebuilds
        assert consumes(watched, own_broker, topic)
        assert watched.rebuilds == settled  # a live member is left alone
        stuck = watched.consumer
        lose_coordinator(stuck)
        # rebuilt after the bound; a new member that has not joined within it gets twice as long
        assert consumes(watched, own_broker, topic, within=4 * STALL_SECONDS)
        # at least one: the new member's first join may be rebuilt again, as above
        assert watched.rebuilds > settled and watched.consumer is not stuck
    finally:
        watched.close(timeout_ms=5000)


def test_without_the_watch_such_a_member_consumes_nothing(own_broker: KafkaBroker) -> None:
    """The failure the watch repairs: the same state leaves a plain consumer idle for good."""
    topic = f"plain-{uuid4().hex[:8]}"
    kafka.ensure_topics(own_broker.bootstrap, [topic], PARTITIONS)
    plain = consuming_plain_member(own_broker, topic)
    try:
        lose_coordinator(plain)
        assert not consumes(plain, own_broker, topic, within=1.5 * STALL_SECONDS)
    finally:
        plain.close(timeout_ms=5000)


def test_members_consume_again_after_broker_kills(own_broker: KafkaBroker) -> None:
    """SIGKILL the broker (all topics lost), restart it, recreate the topic with its configured
    partition count (after tansu auto-created it with 4): the member consumes again, each time."""
    topic, group = f"killed-{uuid4().hex[:8]}", f"g-{uuid4().hex[:8]}"
    kafka.ensure_topics(own_broker.bootstrap, [topic], PARTITIONS)
    watched = member(own_broker, topic, group)
    try:
        # a first join under load may outlast the stall bound and be rebuilt (as in the test
        # above): the same longer, bounded window
        assert consumes(watched, own_broker, topic, within=4 * STALL_SECONDS)
        for _ in range(3):
            process = own_broker._process  # the broker this module started
            assert process is not None
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            watched.poll(timeout_ms=500)  # it notices the broker is gone
            own_broker.start()
            send(own_broker, topic, b"auto-created")  # tansu creates it: 4 partitions
            admin = kafka.admin_client(own_broker.bootstrap)
            try:
                admin.delete_topics([topic])
            finally:
                admin.close()
            kafka.ensure_topics(own_broker.bootstrap, [topic], PARTITIONS)
            assert consumes(watched, own_broker, topic)
    finally:
        watched.close(timeout_ms=5000)


def _round_completed_outside_poll(plain: KafkaConsumer, topic: str) -> Any:
    """Subscribe ``plain``, poll (bounded) until its JoinGroup is out, then wait outside poll
    (bounded) until that round has completed; its coordinator."""
    plain.subscribe([topic])
    coordinator: Any = plain._coordinator
    deadline = time.monotonic() + 30
    while coordinator._join_task is None and time.monotonic() < deadline:
        plain.poll(timeout_ms=200)  # finds the coordinator, sends JoinGroup (held by tansu)
    task = coordinator._join_task
    assert task is not None, "no JoinGroup within 30 s"
    assert not plain.assignment()  # still joining
    deadline = time.monotonic() + 30
    while not task.is_done and time.monotonic() < deadline:
        time.sleep(0.05)  # outside poll while the round completes
    assert task.succeeded(), task
    return coordinator


def test_a_join_that_completes_between_two_polls_is_kept(own_broker: KafkaBroker) -> None:
    """kafka-python 3.0.12 drops a JoinGroup/SyncGroup round that completes while its caller is
    outside ``poll`` and sends a new JoinGroup, which tansu holds for half the session timeout
    (5 s): a member whose loop works between polls (a look at the topic every 5 s) could miss
    round after round. The finished round is applied at the next poll (infra.kafka_join)."""
    topic = f"between-{uuid4().hex[:8]}"
    kafka.ensure_topics(own_broker.bootstrap, [topic], PARTITIONS)
    plain = kafka.consumer(own_broker.bootstrap, f"g-{uuid4().hex[:8]}")
    try:
        _round_completed_outside_poll(plain, topic)
        plain.poll(timeout_ms=1_000)  # before the fix: a new JoinGroup, held for 5 s
        assert plain.assignment() == {TopicPartition(topic, p) for p in range(PARTITIONS)}
    finally:
        plain.close(timeout_ms=5000)


def test_a_round_older_than_the_session_is_sent_again(own_broker: KafkaBroker) -> None:
    """Heartbeats are off from the JoinGroup until a round is applied: after a session timeout
    outside poll the broker may have ended the round's generation (and given its partitions to
    another member), so the kept round is not applied: the next poll joins again."""
    topic = f"stale-{uuid4().hex[:8]}"
    kafka.ensure_topics(own_broker.bootstrap, [topic], PARTITIONS)
    plain = kafka.consumer(own_broker.bootstrap, f"g-{uuid4().hex[:8]}")
    try:
        coordinator = _round_completed_outside_poll(plain, topic)
        stale = coordinator.config["session_timeout_ms"] / 1000
        time.sleep(stale)  # the round's age now exceeds the session timeout
        plain.poll(timeout_ms=1_000)  # a new JoinGroup, held by tansu: nothing assigned yet
        assert not plain.assignment()
        assert coordinator._join_task is not None and not coordinator._join_task.is_done
    finally:
        plain.close(timeout_ms=5000)
