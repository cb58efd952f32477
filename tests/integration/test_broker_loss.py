"""The broker loses its data (tansu keeps topics in memory): the system heals from the store.

This module starts its own broker, so it can stop and restart it (all topics gone) without
disturbing other tests. ``clientele relay`` and ``clientele consume`` run as processes, as
deployed; nobody edits a table or restarts a process by hand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
import structlog
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from commands import messages as m
from commands.service import CommandService, Context
from consumers.rebuild import rebuild
from consumers.relay import Relay
from consumers.relay_tables import parking_lot
from consumers.relay_topic import TopicGuard
from consumers.store_feed import StoreFeed
from infra import kafka
from infra.kafka_topics import TopicInspector
from infra.local_services import KafkaBroker
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from projections.framework import ensure_schema
from projections.registry import all_projectors
from tests.integration.kafka_support import (
    CLIENTELE,
    Proc,
    freeze,
    full_mode_env,
    private_broker,
    read_topic,
)
from tests.integration.test_kafka_full_mode import customer_event_count, wait_until_converged

pytestmark = pytest.mark.integration
CTX = Context(actor="loss")
PARTITIONS = 12


@pytest.fixture(scope="module")
def own_broker() -> Iterator[KafkaBroker]:
    """A broker of this module only: the tests stop and restart it."""
    with private_broker("lossy") as server:
        yield server


def register(service: CommandService, count: int, tag: str) -> list[UUID]:
    outcomes = service.execute_batch(
        [m.RegisterCustomer(name=f"{tag}{i}") for i in range(count)], CTX
    )
    ids = [o.customer_id for o in outcomes if o.customer_id]
    service.execute_batch([m.TagCustomer(customer_id=c, tag=tag) for c in ids], CTX)
    return ids


def parked_and_profiles(read_store: ReadStore) -> tuple[int, set[str]]:
    """(customers parked by any projection, customer ids in the profiles read model)."""
    with read_store.transaction() as tx:
        parked = sum(
            int(tx.fetchall(f"SELECT COUNT(*) FROM {p.parked_table}")[0][0])
            for p in all_projectors()
        )
        profiles = {str(r[0]) for r in tx.fetchall("SELECT customer_id FROM profiles")}
    return parked, profiles


def test_broker_restart_loses_topics_and_everything_heals_from_the_store(
    own_broker: KafkaBroker, postgres_url: str, tmp_path: Path
) -> None:
    prefix = f"loss{uuid4().hex[:6]}."
    topics = kafka.Topics(prefix)
    env = full_mode_env(
        postgres_url, own_broker.bootstrap, prefix, CLIENTELE_KAFKA_PARTITIONS=str(PARTITIONS)
    )
    store = EventStore(postgres_url)
    service = CommandService(store, index_key="k")
    read_store = open_read_store(postgres_url)
    ensure_schema(read_store, all_projectors())
    relay = Proc(["relay"], env, tmp_path / "relay.log")
    consumer = Proc(["consume"], env, tmp_path / "consume.log")
    relay.start()
    consumer.start()
    try:
        before = register(service, 60, "before")
        wait_until_converged(store, read_store, [relay, consumer], timeout=180)

        own_broker.stop()  # memory storage: every topic, offset and group is gone
        own_broker.start()
        after = register(service, 40, "after")
        service.execute_batch([m.TagCustomer(customer_id=c, tag="later") for c in before], CTX)

        wait_until_converged(store, read_store, [relay, consumer], timeout=240)
        # Healed: later events flow through the recreated topic, on every partition.
        third = register(service, 30, "third")
        wait_until_converged(store, read_store, [relay, consumer], timeout=180)
        code, group = group_status(env)
        assert code == 0 and group["stuck"] is False and group["lag"] == 0, group
        assert [p["partition"] for p in group["partitions"]] == list(range(PARTITIONS))
        assert all(p["stored"] is not None for p in group["partitions"]), group
        for projector in all_projectors():
            result = rebuild(StoreFeed(store), read_store, projector, verify_only=True)
            assert result.differences == [], projector.name
        parked, profiles = parked_and_profiles(read_store)
        assert parked == 0  # no customer held for a "missing version" (ProfileGap)
        assert {str(c) for c in before + after + third} <= profiles  # every customer readable
        assert read_topic(own_broker.bootstrap, topics.dlq(topics.events), 0, timeout=3) == []

        inspector = TopicInspector(own_broker.bootstrap)
        try:  # recreated with the configured partitions, the whole history republished
            assert inspector.state(topics.events).partitions == PARTITIONS
        finally:
            inspector.close()
        republished = read_topic(own_broker.bootstrap, topics.events, customer_event_count(store))
        keys = {r.key.decode() for r in republished}
        assert {str(c) for c in before + after} <= keys
        relay_log, consume_log = relay.log.read_text(), consumer.log.read_text()
        assert "relay.topic_lost" in relay_log and "relay.republishing" in relay_log
        assert "consumer.topic_lost" in consume_log
        assert "consumer.caught_up_from_store" in consume_log
        assert "ProfileGap" not in consume_log and "missing from the feed" not in consume_log
    finally:
        relay.terminate()
        consumer.terminate()
        read_store.close()
        store.close()


def test_a_topic_recreated_with_another_partition_count_is_refused_or_repaired(
    own_broker: KafkaBroker, postgres_url: str, tmp_path: Path
) -> None:
    prefix = f"parts{uuid4().hex[:6]}."
    topics = kafka.Topics(prefix)
    env = full_mode_env(
        postgres_url, own_broker.bootstrap, prefix, CLIENTELE_KAFKA_PARTITIONS=str(PARTITIONS)
    )
    admin = KafkaAdminClient(bootstrap_servers=own_broker.bootstrap)
    try:
        # Never used: another partition count is a configuration error, named clearly.
        admin.create_topics([NewTopic(topics.events, 5, 1)])
        with pytest.raises(kafka.PartitionCountMismatch) as refused:
            kafka.ensure_topics(own_broker.bootstrap, topics.all(), PARTITIONS)
        assert str(refused.value).startswith(
            f"topic '{topics.events}' has 5 partitions, expected {PARTITIONS}"
        )
        assert not set(topics.all()[1:]) & set(admin.list_topics())  # nothing created
        done = subprocess.run(
            [CLIENTELE, "relay"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"'{topics.events}' has 5 partitions, expected {PARTITIONS}" in done.stderr
        assert "Traceback" not in done.stderr

        # Published and acknowledged, then the topic is recreated with 4 partitions: the relay
        # says what it found, recreates it with 12 and republishes everything from the store.
        admin.delete_topics([topics.events])
        kafka.ensure_topics(own_broker.bootstrap, topics.all(), PARTITIONS)
        store = EventStore(postgres_url)
        checkpoints = open_read_store(postgres_url)
        inspector = TopicInspector(own_broker.bootstrap)
        limits = kafka.MessageLimits()
        guard = TopicGuard(
            inspector, PARTITIONS, limits, lambda: kafka.producer(own_broker.bootstrap, limits)
        )
        publisher = Relay(
            StoreFeed(store), guard.new_producer(), topics.events, checkpoints, guard=guard
        )
        try:
            assert publisher.verify() is False
            register(CommandService(store, index_key="k"), 30, "p")
            total = customer_event_count(store)
            assert publisher.catch_up() == total
            admin.delete_topics([topics.events])
            admin.create_topics([NewTopic(topics.events, 4, 1)])
            with structlog.testing.capture_logs() as logs:
                assert publisher.verify() is True
            (lost,) = [e for e in logs if e["event"] == "relay.topic_lost"]
            assert lost["found"]["partitions"] == 4 and lost["recorded"]["topic"] == topics.events
            assert any("topic id changed" in reason for reason in lost["reasons"])
            assert publisher.position() == 0
            assert inspector.state(topics.events).partitions == PARTITIONS
            assert publisher.catch_up() == total
            assert len(read_topic(own_broker.bootstrap, topics.events, total)) == total
            with structlog.testing.capture_logs() as logs:
                healed = publisher.verify()
            assert healed is False, logs  # healed: nothing more to do
        finally:
            publisher.producer.close(timeout=5)
            inspector.close()
            checkpoints.close()
            store.close()
    finally:
        admin.close()


def clientele(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLIENTELE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def group_status(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    done = clientele(env, "consumers", "status", "--json")
    assert done.returncode in {0, 1}, done.stderr
    (only,) = orjson.loads(done.stdout)["groups"]
    return done.returncode, only


def test_consumers_status_and_reset_through_the_command_line(
    own_broker: KafkaBroker, postgres_url: str
) -> None:
    prefix = f"cli{uuid4().hex[:6]}."
    topics = kafka.Topics(prefix)
    env = full_mode_env(
        postgres_url, own_broker.bootstrap, prefix, CLIENTELE_KAFKA_PARTITIONS=str(PARTITIONS)
    )
    kafka.ensure_topics(own_broker.bootstrap, topics.all(), PARTITIONS)
    store = EventStore(postgres_url)
    read_store = open_read_store(postgres_url)
    checkpoints = open_read_store(postgres_url)
    producer = kafka.producer(own_broker.bootstrap)
    try:
        ids = register(CommandService(store, index_key="k"), 25, "c")
        assert Relay(StoreFeed(store), producer, topics.events, checkpoints).catch_up() > 0
        assert clientele(env, "consumers", "status").stdout.startswith("no consumer group")

        # No consumer ever ran: the reset feeds the read models from the store first.
        done = clientele(env, "consumers", "reset", "projections")
        assert done.returncode == 0, done.stderr
        assert "events read from the store" in done.stdout
        assert {str(c) for c in ids} <= parked_and_profiles(read_store)[1]
        code, group = group_status(env)
        assert code == 0 and group["group"] == "clientele-projections"
        assert group["stuck"] is False and group["lag"] == 0 and group["behind"] == 0
        assert group["position"] == group["head"] == store.head()
        assert len(group["partitions"]) == PARTITIONS and "profiles" in group["projections"]

        # The broker loses the topic: the stored offsets no longer count, status says why.
        admin = KafkaAdminClient(bootstrap_servers=own_broker.bootstrap)
        try:
            admin.delete_topics([topics.events])
            admin.create_topics([NewTopic(topics.events, PARTITIONS, 1)])
        finally:
            admin.close()
        code, group = group_status(env)
        assert code == 1 and group["stuck"] is True
        assert any("topic id changed" in reason for reason in group["reasons"])
        table = clientele(env, "consumers", "status")
        assert table.returncode == 1 and "stuck" in table.stdout

        done = clientele(env, "consumers", "reset", "projections", "--to-store-position", "10")
        assert done.returncode == 0, done.stderr
        code, group = group_status(env)
        assert code == 0 and group["stuck"] is False

        for args, said in [
            (["nonsense"], "'nonsense' is not fed from Kafka"),
            (["segments"], "'segments' is not fed from Kafka"),
            (["profiles", "--to-latest", "--to-store-position", "3"], "not both"),
        ]:
            refused = clientele(env, "consumers", "reset", *args)
            assert refused.returncode == 2 and said in refused.stderr, refused.stderr
            assert "Traceback" not in refused.stderr
    finally:
        producer.close(timeout=5)
        checkpoints.close()
        read_store.close()
        store.close()


def parked_at(checkpoints: ReadStore) -> dict[str, int]:
    with checkpoints.transaction() as tx:
        return {p.customer_id: p.version for p in parking_lot().listing(tx)}


def test_a_republish_keeps_the_events_before_a_parked_customers_parked_one(
    own_broker: KafkaBroker, postgres_url: str
) -> None:
    """A customer parked at version 3 (too large) had versions 1-2 published; the broker loses
    the topic: the republish from the store sends them again (only version 3 on waits)."""
    prefix = f"held{uuid4().hex[:6]}."
    topics = kafka.Topics(prefix)
    limits = kafka.MessageLimits(message_bytes=20_000)
    kafka.ensure_topics(own_broker.bootstrap, topics.all(), PARTITIONS, limits)
    store = EventStore(postgres_url)
    service = CommandService(store, index_key="k")
    checkpoints = open_read_store(postgres_url)
    inspector = TopicInspector(own_broker.bootstrap)
    guard = TopicGuard(
        inspector, PARTITIONS, limits, lambda: kafka.producer(own_broker.bootstrap, limits)
    )
    publisher = Relay(
        StoreFeed(store), guard.new_producer(), topics.events, checkpoints, guard=guard
    )
    admin = KafkaAdminClient(bootstrap_servers=own_broker.bootstrap)
    try:
        publisher.verify()
        (big,) = register(service, 1, "big")  # versions 1 and 2
        long_text = {f"note_{i:02d}": "x" * 900 for i in range(40)}  # ~36 kB: refused
        service.execute(m.UpdateProfile(customer_id=big, changes={"attributes": long_text}), CTX)
        others = register(service, 3, "small")
        publisher.catch_up()
        assert parked_at(checkpoints) == {str(big): 3}

        def versions_on_topic(expect: int) -> dict[str, list[int]]:
            found: dict[str, list[int]] = {}
            for record in read_topic(own_broker.bootstrap, topics.events, expect, timeout=20):
                envelope = orjson.loads(record.value)
                found.setdefault(envelope["customer_id"], []).append(envelope["version"])
            return found

        assert versions_on_topic(8)[str(big)] == [1, 2]
        admin.delete_topics([topics.events])  # the broker loses the topic
        assert publisher.verify() is True
        publisher.catch_up()
        republished = versions_on_topic(8)
        assert republished.get(str(big)) == [1, 2]  # before the fix: nothing of Big's
        assert all(republished[str(c)] == [1, 2] for c in others)
        assert parked_at(checkpoints) == {str(big): 3}  # version 3 waits for a redrive
    finally:
        admin.close()
        publisher.producer.close(timeout=5)
        inspector.close()
        checkpoints.close()
        store.close()


def test_a_broker_stopped_under_load_and_resumed_with_its_topics_loses_nothing(
    own_broker: KafkaBroker, postgres_url: str, tmp_path: Path
) -> None:
    """The broker stops answering for 15 s (SIGSTOP: its connections hang, as in a network
    partition) while commands are written, then resumes with every topic (SIGCONT; tansu
    cannot restart without losing them: its storage is memory). Nothing lost or doubled, no
    republish, read models equal a rebuild, no consumer stuck; nobody restarts anything."""
    prefix = f"pause{uuid4().hex[:6]}."
    env = full_mode_env(
        postgres_url, own_broker.bootstrap, prefix, CLIENTELE_KAFKA_PARTITIONS=str(PARTITIONS)
    )
    store = EventStore(postgres_url)
    service = CommandService(store, index_key="k")
    read_store = open_read_store(postgres_url)
    ensure_schema(read_store, all_projectors())
    relay = Proc(["relay"], env, tmp_path / "relay.log")
    consumer = Proc(["consume"], env, tmp_path / "consume.log")
    relay.start()
    consumer.start()
    stopping = threading.Event()
    written: list[UUID] = []

    def load() -> None:
        while not stopping.wait(0.2):
            written.extend(register(service, 5, "paused"))

    writer = threading.Thread(target=load, name="write-load", daemon=True)
    pid = int(own_broker.pid_file.read_text().split()[0])
    try:
        written.extend(register(service, 20, "before"))
        wait_until_converged(store, read_store, [relay, consumer], timeout=180)
        writer.start()
        time.sleep(2)
        freeze(pid)
        try:
            time.sleep(15)
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(3)
        stopping.set()
        writer.join(30)
        wait_until_converged(store, read_store, [relay, consumer], timeout=180)
        for projector in all_projectors():
            result = rebuild(StoreFeed(store), read_store, projector, verify_only=True)
            assert result.differences == [], projector.name
        parked, profiles = parked_and_profiles(read_store)
        assert parked == 0 and {str(c) for c in written} <= profiles
        code, group = group_status(env)
        assert code == 0 and group["stuck"] is False and group["lag"] == 0, group
        assert "relay.topic_lost" not in relay.log.read_text()  # it kept its topics
        assert "consumer.topic_lost" not in consumer.log.read_text()
    finally:
        stopping.set()
        os.kill(pid, signal.SIGCONT)
        relay.terminate()
        consumer.terminate()
        read_store.close()
        store.close()
