"""TLS/SASL options reach every Kafka client, and the session timeout every group member;
libpq options in the database URL (``sslmode``, ``application_name``, …) reach every PostgreSQL
connection. Real broker, real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import OperationalError

from commands import messages as m
from commands.service import CommandService, Context
from infra import kafka
from infra.kafka_group import group_consumer
from infra.local_services import KafkaBroker
from infra.settings import get_settings
from infra.store import EventStore
from tests.api_support import running_api

pytestmark = pytest.mark.integration
PACKAGES = ("api", "bootstrap", "commands", "consumers", "domain", "infra", "projections")
CLIENTS = ("KafkaProducer", "KafkaConsumer", "KafkaAdminClient")


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set CLIENTELE_* variables for this test; the process settings are read afresh."""
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_kafka_options_reach_admin_producer_and_consumer(
    broker: KafkaBroker, configure: pytest.MonkeyPatch
) -> None:
    configure.setenv("CLIENTELE_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    configure.setenv("CLIENTELE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    configure.setenv("CLIENTELE_KAFKA_SASL_PLAIN_USERNAME", "clientele")
    configure.setenv("CLIENTELE_KAFKA_SASL_PLAIN_PASSWORD", "s3cret")
    configure.setenv("CLIENTELE_KAFKA_SSL_CHECK_HOSTNAME", "false")
    topic = f"sec{uuid4().hex[:8]}"
    assert kafka.ensure_topics(broker.bootstrap, [topic], 1) == [topic]
    producer = kafka.producer(broker.bootstrap)
    reader = kafka.consumer(broker.bootstrap, None, consumer_timeout_ms=10_000)
    try:
        for client in (producer, reader):
            assert client.config["sasl_mechanism"] == "SCRAM-SHA-512"
            assert client.config["sasl_plain_username"] == "clientele"
            assert client.config["sasl_plain_password"] == "s3cret"
            assert client.config["ssl_check_hostname"] is False
        producer.send(topic, key=b"k", value=b"v").get(timeout=10)
        reader.subscribe([topic])
        assert next(iter(reader)).value == b"v"
    finally:
        producer.close(timeout=5)
        reader.close()


def test_the_session_timeout_of_group_members_is_the_settings(
    broker: KafkaBroker, configure: pytest.MonkeyPatch
) -> None:
    """CLIENTELE_KAFKA_SESSION_TIMEOUT_MS (the tests set 6 s, tests/conftest.py); unset, 10 s."""
    configure.delenv("CLIENTELE_KAFKA_SESSION_TIMEOUT_MS")
    member = group_consumer(broker.bootstrap, f"g-{uuid4().hex[:8]}")
    assert member.consumer.config["session_timeout_ms"] == 10_000
    member.close()
    get_settings.cache_clear()
    configure.setenv("CLIENTELE_KAFKA_SESSION_TIMEOUT_MS", "4000")
    member = group_consumer(broker.bootstrap, f"g-{uuid4().hex[:8]}")
    assert member.consumer.config["session_timeout_ms"] == 4_000
    member.close()


def test_every_client_is_made_in_infra_kafka_from_the_one_config(
    configure: pytest.MonkeyPatch,
) -> None:
    configure.setenv("CLIENTELE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    configure.setenv("CLIENTELE_KAFKA_SSL_CAFILE", "/etc/ssl/certs/ca-certificates.crt")
    configure.setenv("CLIENTELE_KAFKA_SASL_MECHANISM", "PLAIN")
    assert kafka.client_config("broker:9093") == {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "SASL_SSL",
        "ssl_cafile": "/etc/ssl/certs/ca-certificates.crt",
        "sasl_mechanism": "PLAIN",
    }
    root = Path(kafka.__file__).parents[1]
    elsewhere = [
        str(path.relative_to(root))
        for package in PACKAGES
        for path in (root / package).rglob("*.py")
        if path != Path(kafka.__file__)
        and any(f"{client}(" in path.read_text(encoding="utf-8") for client in CLIENTS)
    ]
    assert not elsewhere, f"make Kafka clients with infra.kafka (its client_config): {elsewhere}"


def connections_named(url: str, name: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_database_url_options_reach_the_event_store_connections(postgres_url: str) -> None:
    name = f"clientele-{uuid4().hex[:8]}"
    store = EventStore(f"{postgres_url}?sslmode=disable&application_name={name}")
    try:
        service = CommandService(store, default_region="DE", index_key="k")
        outcome = service.execute(m.RegisterCustomer(name="Ada"), Context(actor="test"))
        assert outcome.customer_id is not None
        assert store.customer(outcome.customer_id).version == 1
        assert connections_named(postgres_url, name) >= 1
    finally:
        store.close()


def test_sslmode_the_server_cannot_meet_is_refused_not_ignored(postgres_url: str) -> None:
    with pytest.raises(OperationalError):  # the test server has no TLS: no connection at all
        EventStore(f"{postgres_url}?sslmode=require").close()


def test_the_api_works_on_a_url_with_sslmode_disable(tmp_path: Path, postgres_url: str) -> None:
    with running_api(tmp_path, f"{postgres_url}?sslmode=disable") as api:
        written = api.client.post(
            "/v1/customers", json={"name": "Ada"}, headers=api.headers("writer")
        )
        assert written.status_code == 201, written.text
        read = api.client.get(
            f"/v1/customers/{written.json()['customer_id']}",
            headers=api.headers("reader", **{"X-Min-Position": str(written.json()["position"])}),
        )
        assert read.status_code == 200 and read.json()["version"] == 1
