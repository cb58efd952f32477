"""Registrations from the command topic are checked for duplicates, in full mode with processes
started as a user would (PostgreSQL, the tansu broker): ``relay`` and ``consume`` keep the
duplicates read model, ``ingest`` executes the commands. A registration that probably
duplicates a live customer gets ``possible_duplicates`` on its result in
``customer.command-results`` (the same answer as the HTTP route's check), and the pair is
listed for review (``GET /v1/duplicates``) before any scan."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pytest
from kafka import KafkaProducer

from infra import kafka
from infra.local_services import KafkaBroker
from infra.readstore import open_read_store
from projections import duplicate_candidates
from tests.duplicates_support import assert_reported_as_robert
from tests.integration.kafka_support import Proc, full_mode_env, read_topic

pytestmark = pytest.mark.integration
ROBERT = {
    "name": "Robert Smith",
    "email": "rob.smith@gmail.com",
    "phone": "+44 20 7946 0958",
    "attributes": {"address": "12 High Street", "city": "London"},
}
BOB = {  # nickname, provider alias of the same mailbox, the phone written another way
    "name": "Bob Smith",
    "email": "robsmith+shop@googlemail.com",
    "phone": "+44 (20) 7946-0958",
    "attributes": {"address": "12 high st.", "city": "LONDON"},
}
ALICE = {  # a household member: same landline and address, another person
    "name": "Alice Smith",
    "email": "alice@example.com",
    "phone": "+442079460958",
    "attributes": {"address": "12 High Street", "city": "London"},
}


def until(check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def test_command_topic_registrations_report_and_record_duplicates(
    broker: KafkaBroker, postgres_url: str, tmp_path: Path
) -> None:
    prefix = f"d{uuid4().hex[:8]}."
    topics = kafka.Topics(prefix)
    kafka.ensure_topics(broker.bootstrap, topics.all(), partitions=12)
    env = full_mode_env(postgres_url, broker.bootstrap, prefix)
    procs = [
        Proc(args, env, tmp_path / f"{args[0]}.log")
        for args in (["ingest"], ["relay"], ["consume", "--projection", "duplicates"])
    ]
    for proc in procs:
        proc.start()
    read_store = open_read_store(postgres_url)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    results: dict[str, dict[str, Any]] = {}

    def send(key: str, body: dict[str, Any]) -> dict[str, Any]:
        command = {"type": "register", "idempotency_key": key, **body}
        producer.send(topics.commands, key=key.encode(), value=orjson.dumps(command)).get(30)
        records = read_topic(broker.bootstrap, topics.command_results, len(results) + 1, 120)
        results.update({r.key.decode(): orjson.loads(r.value) for r in records})
        assert key in results, procs[0].log.read_text()[-3000:]
        return results[key]

    def projected(customer_id: str) -> bool:
        duplicate_candidates.ensure_schema(read_store)
        with read_store.snapshot() as tx:
            row = tx.fetchone(
                "SELECT live FROM {duplicate_records} WHERE customer_id = ?", (customer_id,)
            )
        return row is not None

    try:
        robert = send("reg-robert", ROBERT)
        assert (robert["status"], robert["possible_duplicates"]) == ("accepted", [])
        until(lambda: projected(robert["customer_id"]))
        alice = send("reg-alice", ALICE)
        assert alice["possible_duplicates"] == []  # not the household member
        until(lambda: projected(alice["customer_id"]))

        bob = send("reg-bob", BOB)
        assert bob["status"] == "accepted", bob
        assert_reported_as_robert(bob, robert["customer_id"])
        # recorded for review: listed as soon as the read model has the new customer
        until(lambda: projected(bob["customer_id"]))
        pair = "~".join(sorted((robert["customer_id"], bob["customer_id"])))
        listed, _ = duplicate_candidates.list_candidates(read_store, 0.5, 10)
        assert [(i["pair_id"], i["probability"]) for i in listed] == [
            (pair, bob["possible_duplicates"][0]["probability"])
        ]

        again = send("reg-bob", BOB)  # redelivered: the recorded outcome, nothing registered
        assert again["customer_id"] == bob["customer_id"]
        for proc in procs:
            assert proc.process is not None and proc.process.poll() is None, proc.log.read_text()
    finally:
        producer.close()
        for proc in procs:
            proc.terminate()
        read_store.close()
