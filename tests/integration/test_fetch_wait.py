"""A group member on the real broker asks for short fetch waits while records flow and for
its configured one when idle (infra.kafka_fetch_wait, issue 16), through the installed
kafka-python's own fetcher: the setting its fetch requests are built from."""

from __future__ import annotations

import time
from typing import Any
from uuid import uuid4

import pytest

from infra import kafka
from infra.kafka_fetch_wait import BUSY_FETCH_WAIT_MS, fetch_wait
from infra.kafka_group import group_consumer
from infra.local_services import KafkaBroker

pytestmark = pytest.mark.integration


def test_a_member_fetches_briefly_while_records_flow_and_long_when_idle(
    broker: KafkaBroker,
) -> None:
    topic = f"wait-{uuid4().hex[:8]}"
    kafka.ensure_topics(broker.bootstrap, [topic], 3)
    member = group_consumer(broker.bootstrap, f"g-{uuid4().hex[:8]}")
    member.subscribe([topic])
    producer = kafka.producer(broker.bootstrap)
    fetcher: Any = member.consumer._fetcher  # the requests it builds carry the wait to the broker
    build = fetcher._create_fetch_requests
    sent: list[int] = []

    def recorded() -> Any:
        requests = build()
        sent.extend(request.max_wait_ms for request, _ in requests.values())
        return requests

    fetcher._create_fetch_requests = recorded
    try:
        configured = member.consumer.config["fetch_max_wait_ms"]
        assert configured > BUSY_FETCH_WAIT_MS
        deadline = time.monotonic() + 30
        while not member.assignment():  # joined: polls without records so far
            assert time.monotonic() < deadline
            member.poll(timeout_ms=200)
        assert fetch_wait(member.consumer) == configured
        producer.send(topic, key=b"k", value=b"v").get(timeout=10)
        received = 0
        while not received:
            assert time.monotonic() < deadline
            received = sum(len(rs) for rs in member.poll(timeout_ms=200).values())
        assert fetch_wait(member.consumer) == BUSY_FETCH_WAIT_MS
        assert sent and set(sent) == {configured}  # every fetch so far asked for the long wait
        del sent[:]
        while not sent:
            assert time.monotonic() < deadline
            member.poll(timeout_ms=100)
        assert set(sent) == {BUSY_FETCH_WAIT_MS}  # the next fetch request carries the short one
        member.fetch_wait.idle_after = 0.5
        time.sleep(0.6)
        assert not member.poll(timeout_ms=50)
        assert fetch_wait(member.consumer) == configured
        del sent[:]
        while not sent:
            assert time.monotonic() < deadline
            member.poll(timeout_ms=100)
        assert set(sent) == {configured}
    finally:
        producer.close(timeout=5)
        member.close(timeout_ms=5000)
