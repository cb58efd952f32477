"""The fetch wait a consumer asks the broker for: short while records flow, its configured
(long) wait when idle (issue 16: with 500 ms throughout, tansu held fetches for up to 250 ms
after a record arrived, most of the e2e lag)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infra.kafka_fetch_wait import (
    BUSY_FETCH_WAIT_MS,
    IDLE_AFTER_SECONDS,
    FetchWait,
    fetch_wait,
    set_fetch_wait,
)


@dataclass
class Fetcher:
    config: dict[str, Any] = field(default_factory=lambda: {"fetch_max_wait_ms": 500})


@dataclass
class Consumer:
    """Where kafka-python keeps the settings: its own and its fetcher's copy (read per request)."""

    config: dict[str, Any] = field(default_factory=lambda: {"fetch_max_wait_ms": 500})
    _fetcher: Fetcher = field(default_factory=Fetcher)


def test_idle_until_records_then_short_until_idle_again() -> None:
    consumer = Consumer()
    wait = FetchWait.of(consumer)
    assert wait.polled(consumer, records=False, now=0.0) == 500
    assert fetch_wait(consumer) == 500
    assert wait.polled(consumer, records=True, now=1.0) == BUSY_FETCH_WAIT_MS
    assert fetch_wait(consumer) == BUSY_FETCH_WAIT_MS
    # an empty poll while records flow (between two commits) keeps it short
    assert wait.polled(consumer, records=False, now=1.0 + IDLE_AFTER_SECONDS / 2) == 20
    assert fetch_wait(consumer) == BUSY_FETCH_WAIT_MS
    assert wait.polled(consumer, records=False, now=1.0 + IDLE_AFTER_SECONDS) == 500
    assert fetch_wait(consumer) == 500
    assert consumer.config["fetch_max_wait_ms"] == 500  # the configured value is left alone


def test_a_replaced_consumer_gets_the_wait_of_the_moment() -> None:
    """A GroupConsumer rebuilds its KafkaConsumer: the new one starts with the configured
    wait, and the next poll sets the one records flowing call for."""
    first = Consumer()
    wait = FetchWait.of(first)
    wait.polled(first, records=True, now=0.0)
    second = Consumer()
    assert wait.polled(second, records=False, now=0.1) == BUSY_FETCH_WAIT_MS
    assert fetch_wait(second) == BUSY_FETCH_WAIT_MS


def test_a_configured_wait_shorter_than_the_busy_one_is_kept() -> None:
    consumer = Consumer(config={"fetch_max_wait_ms": 5}, _fetcher=Fetcher({"fetch_max_wait_ms": 5}))
    wait = FetchWait.of(consumer)
    assert wait.polled(consumer, records=True, now=0.0) == 5
    assert wait.polled(consumer, records=False, now=10.0) == 5


def test_a_client_without_the_fetcher_setting_keeps_its_wait() -> None:
    class Other:
        config = {"fetch_max_wait_ms": 500}

    other = Other()
    assert fetch_wait(other) is None
    set_fetch_wait(other, 20)  # nothing to set: no error, nothing changed
    assert other.config == {"fetch_max_wait_ms": 500}
    assert FetchWait.of(other).polled(other, records=True, now=0.0) == 500  # what is in force
