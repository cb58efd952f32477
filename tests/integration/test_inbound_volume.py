"""Bad input at volume on both inbound topics, through the real processes on a real broker and
PostgreSQL: ``ingest`` reading ``customer.commands`` and ``consume`` reading ``customer.events``
(fed by ``relay``).

Hundreds of messages that are empty, oversized, truncated, wrongly encoded (byte order marks,
UTF-16/UTF-32, Latin-1, invalid UTF-8) or of the wrong JSON type are mixed into real traffic.
Each goes to the topic's DLQ with the specific reason (:mod:`infra.json_values`); well-formed
commands with wrongly typed fields get a rejected result naming the field; the real traffic
flows on; nothing of a refused message is stored, and the read models equal a rebuild.
"""

from __future__ import annotations

import codecs
import random
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pytest
from kafka import KafkaProducer

from consumers.rebuild import rebuild
from consumers.store_feed import StoreFeed
from infra import kafka
from infra.local_services import KafkaBroker
from infra.readstore import open_read_store
from infra.store import EventStore
from projections.framework import ensure_schema
from projections.registry import all_projectors
from tests.integration.kafka_support import Proc, full_mode_env, read_topic
from tests.integration.test_kafka_full_mode import customer_event_count, wait_until_converged

pytestmark = pytest.mark.integration
LIMIT = 64_000  # bytes per message (CLIENTELE_KAFKA_MAX_MESSAGE_BYTES): "oversized" is near it
CUSTOMERS = 60
ROUNDS = 12  # of every kind of bad message below, on each topic


def _text(doc: dict[str, Any]) -> str:
    return orjson.dumps(doc).decode()


def undecodable(doc: dict[str, Any], rng: random.Random) -> list[tuple[bytes | None, str]]:
    """(value, reason the DLQ must give) of every kind of bytes that are no UTF-8 JSON
    object, made from the well-formed ``doc`` (ASCII only)."""
    text = _text(doc)
    raw = text.encode()
    accented = text.replace('"}', 'é"}', 1)
    return [
        (None, "no value (a tombstone)"),
        (b"", "empty"),
        (b" \n", "empty"),
        (codecs.BOM_UTF8 + raw, "UTF-8 byte order mark"),
        (text.encode("utf-16"), "UTF-16 (byte order mark"),
        (text.encode("utf-16-le"), "UTF-16 (NUL bytes"),
        (text.encode("utf-32"), "UTF-32 (byte order mark"),
        (text.encode("utf-32-be"), "UTF-32 (NUL bytes"),
        (accented.encode("latin-1"), "not UTF-8: byte 0xe9"),
        (accented.encode("cp1252"), "not UTF-8: byte 0xe9"),
        (raw[: rng.randrange(1, len(raw) - 1)], "truncated"),
        (raw + b"}", "not JSON: unexpected content after document"),
        (b"\xff" * (LIMIT - 1_000), "not UTF-8: byte 0xff at offset 0"),  # oversized
        (orjson.dumps([doc]), "not a JSON object"),
        (orjson.dumps(text), "not a JSON object"),
        (b"42", "not a JSON object"),
        (b"null", "not a JSON object"),
    ]


def wrongly_typed(customer: str) -> list[tuple[dict[str, Any], str]]:
    """(command, field its rejection names): JSON objects with a field of the wrong type or
    size; refused whole, never coerced."""
    on = {"customer_id": customer}
    return [
        ({"type": "register", "name": 7}, "name"),
        ({"type": 5, **on}, "type"),
        ({"type": "tag", "customer_id": "not-a-uuid", "tag": "x"}, "customer_id"),
        ({"type": "tag", **on, "tag": ["vip"]}, "tag"),
        ({"type": "purchase", **on, "order_id": "o", "amount": 12.5, "currency": "EUR"}, "amount"),
        ({"type": "feedback", **on, "nps": "9"}, "nps"),
        ({"type": "consent", **on, "purpose": "profiling", "granted": "yes"}, "granted"),
        ({"type": "register", "name": "x" * (LIMIT - 1_000)}, "name"),  # oversized
    ]


def test_bad_messages_on_both_inbound_topics_are_dead_lettered_and_the_rest_flows(
    broker: KafkaBroker, postgres_url: str, tmp_path: Path
) -> None:
    rng = random.Random(17)
    prefix = f"v{uuid4().hex[:8]}."
    topics = kafka.Topics(prefix)
    limits = kafka.MessageLimits(LIMIT)
    kafka.ensure_topics(broker.bootstrap, topics.all(), 12, limits)
    env = full_mode_env(
        postgres_url,
        broker.bootstrap,
        prefix,
        CLIENTELE_KAFKA_MAX_MESSAGE_BYTES=str(LIMIT),
        CLIENTELE_LOG_LEVEL="ERROR",
    )
    read_store = open_read_store(postgres_url)
    ensure_schema(read_store, all_projectors())
    procs = [Proc([name], env, tmp_path / f"{name}.log") for name in ("ingest", "relay", "consume")]
    for proc in procs:
        proc.start()
    producer = kafka.producer(broker.bootstrap, limits)
    store = EventStore(postgres_url)
    try:
        ids = [str(uuid4()) for _ in range(CUSTOMERS)]
        good: list[tuple[bytes, dict[str, Any]]] = [
            (c.encode(), {"type": "register", "customer_id": c, "name": f"C{i}"})
            for i, c in enumerate(ids)
        ]
        for i in range(3 * CUSTOMERS):
            customer = rng.choice(ids)
            good.append(
                (customer.encode(), {"type": "tag", "customer_id": customer, "tag": f"t{i}"})
            )
        for n, (_, doc) in enumerate(good):
            doc["idempotency_key"] = f"good-{n}"
        dead: dict[bytes, str] = {}
        typed: dict[str, str] = {}
        bad: list[tuple[bytes, bytes | None]] = []
        for r in range(ROUNDS):
            customer = rng.choice(ids)
            sample = {"type": "tag", "customer_id": customer, "tag": "x", "idempotency_key": "b"}
            for k, (value, reason) in enumerate(undecodable(sample, rng)):
                key = f"dead-{r}-{k}".encode()
                dead[key] = reason
                bad.append((key, value))
            for k, (doc, field) in enumerate(wrongly_typed(customer)):
                typed[f"typed-{r}-{k}"] = field
                bad.append((b"typed", orjson.dumps({**doc, "idempotency_key": f"typed-{r}-{k}"})))
        registrations, rest = good[:CUSTOMERS], good[CUSTOMERS:]
        for key, doc in registrations:  # customers first: their commands go to any partition
            producer.send(topics.commands, key=key, value=orjson.dumps(doc))
        producer.flush()
        read_topic(broker.bootstrap, topics.command_results, CUSTOMERS, timeout=120)
        mixed = [(key, orjson.dumps(doc)) for key, doc in rest] + bad
        rng.shuffle(mixed)
        for key, value in mixed:
            producer.send(topics.commands, key=key, value=value)
        producer.flush()

        results = read_topic(
            broker.bootstrap, topics.command_results, len(good) + len(typed), timeout=180
        )
        outcomes = {r.key.decode(): orjson.loads(r.value) for r in results}
        assert len(outcomes) == len(good) + len(typed), procs[0].log.read_text()[-3000:]
        for n in range(len(good)):
            assert outcomes[f"good-{n}"]["status"] == "accepted", outcomes[f"good-{n}"]
        for idempotency_key, field in typed.items():
            refused = outcomes[idempotency_key]
            assert refused["status"] == "rejected", refused
            assert refused["problem"]["field"] == field, (idempotency_key, refused)
        letters = read_topic(broker.bootstrap, topics.dlq(topics.commands), len(dead), 60)
        reasons = {r.key: dict(r.headers)["dlq.reason"].decode() for r in letters}
        assert len(letters) == len(dead) and reasons.keys() == dead.keys()
        for key, reason in dead.items():
            assert reasons[key].startswith(f"undecodable command: {reason}"), (key, reasons[key])
        # nothing half-applied: exactly the good commands' events are stored
        assert customer_event_count(store) == len(good)

        envelopes = poison_events(broker, topics, producer, ids, rng)
        wait_until_converged(store, read_store, procs)
        letters = read_topic(broker.bootstrap, topics.dlq(topics.events), len(envelopes), 60)
        reasons = {r.key: dict(r.headers)["dlq.reason"].decode() for r in letters}
        assert len(letters) == len(envelopes) and reasons.keys() == envelopes.keys()
        for key, reason in envelopes.items():
            assert reasons[key].startswith(f"undecodable envelope: {reason}"), (key, reasons)
        for projector in all_projectors():
            report = rebuild(StoreFeed(store), read_store, projector, verify_only=True)
            assert report.differences == [], projector.name
        for proc in procs:
            assert proc.process is not None and proc.process.poll() is None, proc.args
    finally:
        producer.close(timeout=10)
        for proc in procs:
            proc.terminate()
        read_store.close()
        store.close()


def poison_events(
    broker: KafkaBroker,
    topics: kafka.Topics,
    producer: KafkaProducer,
    ids: list[str],
    rng: random.Random,
) -> dict[bytes, str]:
    """Bad records on ``customer.events``, keyed like real ones (a customer id each, made
    unique by a suffix the consumer does not read) between the relay's envelopes; returns
    {key: the reason the DLQ must give}."""
    real = orjson.loads(read_topic(broker.bootstrap, topics.events, 1)[0].value)
    expected: dict[bytes, str] = {}
    for r in range(ROUNDS):
        customer = rng.choice(ids)
        sample = {**real, "customer_id": customer, "data": {"tag": "x"}}
        kinds = [
            *undecodable(sample, rng),
            (orjson.dumps({**real, "version": "7"}), "version must be a positive integer"),
            (orjson.dumps({**real, "type": 7}), "type must be a string"),
            (orjson.dumps({**real, "data": []}), "data must be an object"),
            (orjson.dumps({**real, "occurred_at": "yesterday"}), "occurred_at must be a date-"),
            (orjson.dumps({**real, "customer_id": "C-17"}), "customer_id must be a UUID"),
            (orjson.dumps({k: v for k, v in real.items() if k != "position"}), "position is mis"),
        ]
        for k, (value, reason) in enumerate(kinds):
            key = f"{customer}#{r}-{k}".encode()
            expected[key] = reason
            producer.send(topics.events, key=key, value=value)
    producer.flush()
    return expected
