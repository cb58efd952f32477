"""Full mode (PostgreSQL + the real broker): no single event stalls the pipeline (issue 13).

* One message-size limit: topics are created (or raised) with it, producers refuse records
  above it, consumers fetch records up to it.
* The relay parks a customer whose envelope is larger than the limit: other customers flow,
  the parked customer's later events wait, ``X-Min-Position`` reads do not 503 because of it,
  and re-driving after raising the limit publishes its events in order, once.
* A projection that cannot apply a customer's event (text PostgreSQL cannot store, written
  straight through the store) parks that customer for that projection only; re-driving from
  the store after a fix converges. A version missing from the topic heals from the store.

``clientele relay`` and ``clientele consume`` run as processes, exactly as deployed.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import MessageSizeTooLargeError

from api.http.app import create_app
from bootstrap import build
from commands.service import CommandService
from consumers.kafka_projection import ProjectionConsumer
from consumers.rebuild import rebuild
from consumers.redrive import redrive
from consumers.relay_tables import parking_lot
from consumers.store_feed import StoreFeed
from infra import kafka
from infra.api_keys import KeyStore, Role
from infra.envelope import Envelope
from infra.local_services import KafkaBroker
from infra.parking import Parked
from infra.readstore import ReadStore
from infra.settings import Settings
from infra.store import EventStore
from projections.profiles import ProfilesProjector, get_profile
from projections.registry import all_projectors
from tests.integration.kafka_support import CLIENTELE, Proc, read_topic
from tests.integration.parking_support import (
    NulSafeProfiles,
    RefusingProfiles,
    open_read_models,
    parked,
    register,
    register_with_nul,
    tag,
    version_of,
)
from tests.integration.test_kafka_full_mode import wait_until_converged

pytestmark = [pytest.mark.integration, pytest.mark.backends("postgres")]
LIMIT = 24_000  # bytes: a legal registration with long attributes is larger


@pytest.fixture
def env(broker: KafkaBroker, database_url: str) -> dict[str, str]:
    prefix = f"p{uuid4().hex[:8]}."
    kafka.ensure_topics(broker.bootstrap, kafka.Topics(prefix).all(), 12)
    return {
        **os.environ,
        "CLIENTELE_DATABASE_URL": database_url,
        "CLIENTELE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CLIENTELE_KAFKA_TOPIC_PREFIX": prefix,
        "CLIENTELE_LOG_LEVEL": "WARNING",
        "COLUMNS": "400",  # rich tables on one line
    }


@pytest.fixture
def read_store(database_url: str) -> Iterator[ReadStore]:
    read_store = open_read_models(database_url)
    yield read_store
    read_store.close()


def eventually(
    check: Callable[[], bool], what: str, procs: list[Proc], timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for proc in procs:
            assert proc.process is not None and proc.process.poll() is None, proc.log.read_text()
        time.sleep(0.2)
    logs = "\n".join(proc.log.read_text()[-2000:] for proc in procs)
    pytest.fail(f"timed out waiting for {what}\n{logs}")


def relay_parked(read_store: ReadStore) -> list[Parked]:
    with read_store.transaction() as tx:
        if "relay_parked" not in read_store.table_names(tx):
            return []
        return parking_lot().listing(tx)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLIENTELE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("limit", [LIMIT, 3_000_000])  # below and above Kafka's 1 MiB default
def test_one_limit_for_producers_topics_and_fetches(broker: KafkaBroker, limit: int) -> None:
    limits = kafka.MessageLimits(limit)
    topics = kafka.Topics(f"l{uuid4().hex[:8]}.")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:  # a topic made before, with a lower limit
        admin.create_topics(
            [NewTopic(topics.events, 12, 1, topic_configs={"max.message.bytes": "5000"})]
        )
    finally:
        admin.close()
    created = kafka.ensure_topics(broker.bootstrap, topics.all(), 12, limits)
    assert topics.events not in created and topics.commands in created
    assert kafka.topic_limits(broker.bootstrap, topics.all()) == {
        name: limit + (kafka.DLQ_HEADROOM_BYTES if name.endswith(".dlq") else 0)
        for name in topics.all()
    }
    producer = kafka.producer(broker.bootstrap, limits)
    dlq = kafka.producer(broker.bootstrap, limits, dlq=True)
    fits = limit - 200  # the record-batch overhead counts too
    try:
        with pytest.raises(MessageSizeTooLargeError):
            producer.send(topics.events, key=b"k", value=b"x" * limit)
        producer.send(topics.events, key=b"k", value=b"y" * fits).get(timeout=30)
        headers = [("dlq.reason", b"r" * 2000)]
        dlq.send(topics.dlq(topics.events), key=b"k", value=b"z" * fits, headers=headers).get(
            timeout=30
        )
    finally:
        producer.close(timeout=10)
        dlq.close(timeout=10)
    reader = kafka.consumer(broker.bootstrap, None, limits)
    assert reader.config["max_partition_fetch_bytes"] >= limits.dlq_bytes
    try:
        partitions = [TopicPartition(topics.events, p) for p in range(12)]
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got = [r for rs in reader.poll(timeout_ms=500).values() for r in rs]
    finally:
        reader.close()
    assert [len(r.value) for r in got] == [fits]


def test_an_envelope_too_large_parks_its_customer_and_the_rest_flows(
    env: dict[str, str],
    broker: KafkaBroker,
    store: EventStore,
    read_store: ReadStore,
    service: CommandService,
    tmp_path: Path,
) -> None:
    low = {**env, "CLIENTELE_KAFKA_MAX_MESSAGE_BYTES": str(LIMIT)}
    relay = Proc(["relay"], low, tmp_path / "relay.log")
    consumer = Proc(["consume"], low, tmp_path / "consume.log")
    consumer.start()
    relay.start()
    profiles = ProfilesProjector()
    try:
        ann, cid = register(service, "Ann"), register(service, "Cid")
        long_text = {
            f"note_{i:02d}": "x" * 900 for i in range(40)
        }  # legal: up to 100 of 1,000 chars
        big = register(service, "Big", attributes=long_text)
        tag(service, ann, "flows")
        last = tag(service, big, "waits")  # the newest event is the parked customer's
        eventually(  # Ann and Cid may sit on different partitions: each is waited for
            lambda: (
                version_of(read_store, profiles, ann) == 2
                and version_of(read_store, profiles, cid) == 1
                and bool(relay_parked(read_store))
            ),
            "Ann and Cid projected and Big parked by the relay",
            [relay, consumer],
        )
        (held,) = relay_parked(read_store)
        assert (held.customer_id, held.version) == (str(big), 1)
        assert held.size is not None and held.size > LIMIT
        assert "MessageSizeTooLarge" in held.reason
        assert version_of(read_store, profiles, big) == 0  # waits behind its parked event
        eventually(lambda: kafka_checkpoint(read_store) == store.head(), "relay moved on", [relay])

        check_the_api_while_parked(env, tmp_path, ann, big, last)
        status = cli(env, "projections", "status")
        assert status.returncode == 0, status.stderr
        relay_row = next(line for line in status.stdout.splitlines() if "│ relay" in line)
        assert str(big) in relay_row and "MessageSizeTooLarge" in relay_row

        still = cli(low, "relay", "redrive", "--wait", "30")  # same limit: refused again
        assert still.returncode == 1 and "still parked" in still.stdout, still.stdout
        assert relay_parked(read_store)[0].attempts >= 1

        relay.terminate()  # raise the limit and restart: parked customers are retried at once
        raised = Proc(["relay"], env, tmp_path / "relay-raised.log")
        raised.start()
        relay = raised
        eventually(
            lambda: version_of(read_store, profiles, big) == 2 and not relay_parked(read_store),
            "Big re-driven and projected",
            [relay, consumer],
        )
        # every projection, those following the store's log too, before the rebuild compares
        wait_until_converged(store, read_store, [relay, consumer])
    finally:
        relay.terminate()
        consumer.terminate()
    with read_store.transaction() as tx:
        shown = get_profile(tx, big)
    assert shown is not None and shown["tags"] == ["waits"] and shown["attributes"] == long_text
    total = len(StoreFeed(store).read(0, 100_000))
    records = read_topic(
        broker.bootstrap, kafka.Topics(env["CLIENTELE_KAFKA_TOPIC_PREFIX"]).events, total
    )
    delivered: dict[str, list[int]] = {}
    for record in records:
        envelope = Envelope.from_bytes(record.value)
        delivered.setdefault(envelope.customer_key, []).append(envelope.version)
    assert delivered == {str(ann): [1, 2], str(cid): [1], str(big): [1, 2]}  # none lost, none twice
    for projector in all_projectors():
        assert rebuild(StoreFeed(store), read_store, projector, verify_only=True).differences == []


def kafka_checkpoint(read_store: ReadStore) -> int:
    with read_store.transaction() as tx:
        row = tx.fetchone("SELECT position FROM relay_checkpoints WHERE name = 'customer-events'")
    return 0 if row is None else int(row[0])


def check_the_api_while_parked(
    env: dict[str, str], tmp_path: Path, ann: UUID, big: UUID, last: int
) -> None:
    """Reads waiting for positions behind only the parked customer are served at once;
    reading the parked customer itself says why it is behind."""
    settings = Settings(
        database_url=env["CLIENTELE_DATABASE_URL"],
        kafka_bootstrap=env["CLIENTELE_KAFKA_BOOTSTRAP"],
        kafka_topic_prefix=env["CLIENTELE_KAFKA_TOPIC_PREFIX"],
        api_keys_file=tmp_path / "keys.json",
    )
    token = KeyStore(settings.api_keys_file).create("ops", [Role.READER])[1]
    headers = {"Authorization": f"Bearer {token}", "X-Min-Position": str(last)}
    with TestClient(create_app(build(settings))) as client:
        started = time.monotonic()
        assert client.get(f"/v1/customers/{ann}", headers=headers).status_code == 200
        assert time.monotonic() - started < 10  # before: 503 after the 2 s wait, forever
        held = client.get(f"/v1/customers/{big}", headers=headers)
        assert held.status_code == 503 and held.json()["type"] == "/problems/customer-parked"
        assert held.json()["held_by"] == "relay"
        status = client.get("/projections", headers=headers).json()
        assert status["relay"]["parked"]["count"] == 1
        assert status["relay"]["parked"]["oldest"]["customer_id"] == str(big)
        assert "clientele_relay_parked_customers 1.0" in client.get("/metrics").text


def test_a_customer_a_projection_cannot_store_is_parked_for_it_alone(
    env: dict[str, str],
    store: EventStore,
    read_store: ReadStore,
    service: CommandService,
    tmp_path: Path,
) -> None:
    relay = Proc(["relay"], env, tmp_path / "relay.log")
    consumer = Proc(["consume"], env, tmp_path / "consume.log")
    consumer.start()
    relay.start()
    profiles, audit = ProfilesProjector(), all_projectors()[1]
    try:
        ann = register(service, "Ann")
        nul = register_with_nul(store)
        tag(service, nul, "after")
        tag(service, ann, "flows")
        eventually(
            lambda: (
                version_of(read_store, profiles, ann) == 2
                and version_of(read_store, audit, nul) == 2
            ),
            "Ann projected, the NUL customer audited",
            [relay, consumer],
        )
        (held,) = parked(read_store, profiles)
        assert (held.customer_id, held.version) == (str(nul), 1) and "NUL" in held.reason
        assert version_of(read_store, profiles, nul) == 0
        assert all(not parked(read_store, p) for p in all_projectors()[1:])
        eventually(  # the consumer retries on its own, with backoff
            lambda: parked(read_store, profiles)[0].attempts >= 1,
            "an automatic retry",
            [consumer],
            timeout=30,
        )
        status = cli(env, "projections", "status")
        row = next(line for line in status.stdout.splitlines() if "│ profiles" in line)
        assert str(nul) in row and "NUL" in row, status.stdout
        again = cli(env, "projections", "redrive", "profiles")
        assert again.returncode == 1 and "still parked" in again.stdout, again.stdout

        fixed = redrive(StoreFeed(store), read_store, [NulSafeProfiles()], due_only=False)
        assert [(o.applied, o.parked) for o in fixed] == [(2, None)]
        tag(service, nul, "later")  # the live feed carries on behind the re-drive
        eventually(lambda: version_of(read_store, profiles, nul) == 3, "the next event", [consumer])
    finally:
        relay.terminate()
        consumer.terminate()
    with read_store.transaction() as tx:
        shown = get_profile(tx, nul)
    assert shown is not None and shown["name"] == "NulByte" and shown["tags"] == ["after", "later"]


def test_the_kafka_consumer_heals_gaps_and_refusals_from_the_store(
    broker: KafkaBroker, store: EventStore, read_store: ReadStore, service: CommandService
) -> None:
    """Fed a topic that lost one event, and with a projector refusing one customer."""
    ann, bob = register(service, "Ann"), register(service, "Bob")
    tag(service, ann, "a")
    tag(service, ann, "b")
    topic = f"g{uuid4().hex[:8]}.customer.events"
    kafka.ensure_topics(broker.bootstrap, [topic], 12)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    sealed = StoreFeed(store).read_sealed(0, 100)
    for envelope in sealed:
        if (envelope.customer_id, envelope.version) != (ann, 2):  # lost on the way
            producer.send(topic, key=envelope.customer_key.encode(), value=envelope.to_bytes())
    producer.flush()
    producer.close()
    refusing = RefusingProfiles({str(bob)})
    reader = kafka.consumer(broker.bootstrap, None)
    dlq = kafka.producer(broker.bootstrap, dlq=True)
    worker = ProjectionConsumer(
        reader,
        dlq,
        topic=topic,
        group="gap-test",
        read_store=read_store,
        projectors=[refusing],
        personal=store.personal,
        feed=StoreFeed(store),
    )
    partitions = [TopicPartition(topic, p) for p in range(12)]
    reader.assign(partitions)
    worker.seek(partitions)
    try:
        deadline = time.monotonic() + 60
        while worker.applied < len(sealed) - 1 and time.monotonic() < deadline:
            worker.poll_once()
        held = {p.customer_id: p for p in parked(read_store, refusing)}
        assert held[str(ann)].version == 2 and "missing from the feed" in held[str(ann)].reason
        assert held[str(bob)].version == 1 and "cannot project" in held[str(bob)].reason
        refusing.refused.clear()
        deadline = time.monotonic() + 30
        while parked(read_store, refusing) and time.monotonic() < deadline:
            worker.redrive_due()  # what the consumer's loop does every second
            time.sleep(0.2)
    finally:
        reader.close()
        dlq.close(timeout=10)
    assert parked(read_store, refusing) == []
    assert version_of(read_store, refusing, ann) == 3 and version_of(read_store, refusing, bob) == 1
