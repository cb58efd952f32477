"""Full mode: batches of purchases on one growing customer cost the same (issue 13, item 3).

The report: seven ``POST /v1/commands:batch`` of 1,000 purchases with 100-character order ids
for ONE customer, each batch slower than the one before (2.3 s → 10.8 s). Costs are counted
in bytes, never timed: what the API's store decodes per batch (loads), what snapshots write,
and what each projector serialises per batch as the customer's history grows.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from eventsourcing.persistence import StoredEvent
from fastapi.testclient import TestClient

from api.http.app import create_app
from bootstrap import Services, build
from commands import messages as m
from commands.service import Context
from consumers.migrate import migrate
from infra import kafka
from infra.api_keys import KeyStore, Role
from infra.local_services import KafkaBroker
from infra.settings import Settings
from projections import audit_history, profiles, segments
from projections.framework import Binding, project
from tests.integration.kafka_support import full_mode_env

pytestmark = pytest.mark.integration
CLIENTELE = str(Path(sys.executable).parent / "clientele")
BATCHES, PER_BATCH = 7, 300
PARTITIONS = 3  # the processes are told (CLIENTELE_KAFKA_PARTITIONS): they refuse another count
PROJECTOR_MODULES = (audit_history, profiles, segments)  # those that serialise customers' states
CTX = Context(actor="history")


def order(n: int) -> str:
    return f"{n:07d}-".ljust(100, "x")


def purchase_batch(customer_id: str, batch: int) -> dict[str, Any]:
    return {
        "commands": [
            {
                "type": "purchase",
                "customer_id": customer_id,
                "order_id": order(batch * PER_BATCH + i),
                "amount": "12.50",
                "currency": "EUR",
            }
            for i in range(PER_BATCH)
        ]
    }


class Counted:
    """Bytes the store's mapper decodes, and bytes of snapshots stored, as they happen."""

    def __init__(self, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
        self.decoded = self.snapshots = 0
        store = services.store
        decode, snapshots = store.mapper.to_domain_event, store.snapshots
        assert snapshots is not None
        insert = snapshots.recorder.insert_events

        def decoding(stored: StoredEvent) -> Any:
            self.decoded += len(stored.state)
            return decode(stored)

        def inserting(rows: list[StoredEvent], **kwargs: Any) -> Any:
            self.snapshots += sum(len(row.state) for row in rows)
            return insert(rows, **kwargs)

        monkeypatch.setattr(store.mapper, "to_domain_event", decoding)
        monkeypatch.setattr(snapshots.recorder, "insert_events", inserting)


@contextmanager
def running(env: dict[str, str], log: Path, *args: str) -> Iterator[None]:
    with log.open("ab") as sink:
        child = subprocess.Popen([CLIENTELE, *args], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()


def test_batches_of_purchases_on_one_growing_customer_cost_the_same(
    broker: KafkaBroker, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"h{uuid4().hex[:8]}."
    kafka.ensure_topics(broker.bootstrap, kafka.Topics(prefix).all(), partitions=PARTITIONS)
    settings = Settings(
        database_url=postgres_url,
        kafka_bootstrap=broker.bootstrap,
        kafka_topic_prefix=prefix,
        kafka_partitions=PARTITIONS,
        api_keys_file=tmp_path / "keys.json",
    )
    _, token = KeyStore(settings.api_keys_file).create("buyer", [Role.ADMIN], pii=True)
    headers = {"Authorization": f"Bearer {token}"}
    env = full_mode_env(
        postgres_url, broker.bootstrap, prefix, CLIENTELE_KAFKA_PARTITIONS=str(PARTITIONS)
    )
    services = build(settings)
    migrate(services)
    counted = Counted(services, monkeypatch)
    with (
        TestClient(create_app(services)) as client,
        running(env, tmp_path / "relay.log", "relay"),
        running(env, tmp_path / "consume.log", "consume"),
    ):
        created = client.post("/v1/customers", json={"name": "Big Buyer"}, headers=headers)
        customer_id = created.json()["customer_id"]
        decoded, position = [], 0
        for batch in range(BATCHES):
            before = counted.decoded
            answer = client.post(
                "/v1/commands:batch", json=purchase_batch(customer_id, batch), headers=headers
            )
            results = answer.json()["results"]
            assert [r["status"] for r in results] == ["accepted"] * PER_BATCH, results[:3]
            decoded.append(counted.decoded - before)
            position = max(r["position"] for r in results)
        # Each batch after the first reads what was written since (nothing), not the
        # customer's state: before, batch 7 decoded a 2,000-purchase snapshot and more.
        assert max(decoded[1:]) < PER_BATCH * 100, decoded
        # Snapshots: each is followed by at least as many bytes of events (the newest aside).
        store = services.store
        assert store.snapshots is not None
        events = store.recorder.select_events(UUID(customer_id))
        (newest,) = store.snapshots.recorder.select_events(UUID(customer_id), desc=True, limit=1)
        assert counted.snapshots - len(newest.state) <= sum(len(e.state) for e in events)
        # The pipeline keeps up: the profile reaches the last batch.
        profile = wait_for_profile(client, customer_id, position, headers)
        assert profile["purchases"]["count"] == BATCHES * PER_BATCH
        assert profile["purchases"]["total"] == {"EUR": f"{12.5 * BATCHES * PER_BATCH:.2f}"}
    services.close()


def wait_for_profile(
    client: TestClient, customer_id: str, position: int, headers: dict[str, str]
) -> dict[str, Any]:
    """The profile once the read models reached ``position`` (bounded: relay and consumer
    processes start, join the group and catch up)."""
    deadline = time.monotonic() + 180
    while True:
        answer = client.get(
            f"/v1/customers/{customer_id}", headers={**headers, "X-Min-Position": str(position)}
        )
        if answer.status_code == 200:
            result: dict[str, Any] = answer.json()
            return result
        assert answer.status_code == 503 and time.monotonic() < deadline, answer.text
        time.sleep(1)


class Serialised:
    """Bytes a projector module passes through orjson (its state loads and dumps included)."""

    def __init__(self, module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        outer = self

        class Counting:
            @staticmethod
            def dumps(value: Any, *args: Any) -> bytes:
                out = orjson.dumps(value, *args)
                outer.bytes += len(out)
                return out

            @staticmethod
            def loads(data: str | bytes) -> Any:
                outer.bytes += len(data)
                return orjson.loads(data)

        monkeypatch.setattr(module, "orjson", Counting)


def test_projecting_a_batch_touches_the_history_once_not_per_event(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the audit copied the whole profile state (every order) before each event.

    The store feeds the projectors here in-process, as the consumer does, batch by batch (the
    embedded runner is never started)."""
    services = build(Settings(database_url=postgres_url, api_keys_file=tmp_path / "keys.json"))
    migrate(services)
    bindings = [Binding.live(p) for p in services.projectors]
    counters = {module.__name__: Serialised(module, monkeypatch) for module in PROJECTOR_MODULES}
    customer = uuid4()
    services.commands.execute(m.RegisterCustomer(customer_id=customer, name="Big Buyer"), CTX)
    cost, state_bytes, done = {}, {}, 0
    for history, extra in ((300, 100), (2000, 100)):
        commands = [
            m.RecordPurchase(customer_id=customer, order_id=order(n), amount="1.00", currency="EUR")
            for n in range(done, history + extra)
        ]
        services.commands.execute_batch(commands[: history - done], CTX)
        services.commands.execute_batch(commands[history - done :], CTX)
        done = history + extra
        envelopes = services.feed.read(0, 1_000_000)
        with services.read_store.transaction() as tx:
            project(tx, bindings, envelopes[:-extra])
        before = {name: c.bytes for name, c in counters.items()}
        with services.read_store.transaction() as tx:
            project(tx, bindings, envelopes[-extra:])  # one batch of `extra` purchases
            row = tx.fetchone("SELECT state FROM profiles WHERE customer_id = ?", (str(customer),))
        assert row is not None
        cost[history] = {name: c.bytes - before[name] for name, c in counters.items()}
        state_bytes[history] = len(row[0])
    growth = state_bytes[2000] - state_bytes[300]
    for name in counters:  # each loads and stores the customer's state once per batch
        assert cost[2000][name] - cost[300][name] <= 3 * growth, (name, cost, growth)
    services.close()
