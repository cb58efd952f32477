"""The relay's lean read path (:mod:`infra.published`) publishes exactly what the mapper's path
publishes: the same envelope bytes, key, headers and position for every stored customer event,
over a varied generated store (every event type, sealed personal data, merges, unmerges and
erasures, business times, nested values), with events of older class versions taking the
mapper's path (:mod:`tests.published_support`; PostgreSQL in the integration suite)."""

from __future__ import annotations

from uuid import UUID

from commands.service import CommandService, Context
from consumers.store_feed import StoreFeed
from infra.published import Published
from infra.store import EventStore
from tests.published_support import assert_published_as_by_the_mapper, generated_store
from tests.unit.test_envelope import all_event_types_story


def test_lean_path_publishes_the_same_bytes_as_the_mapper(any_store: EventStore) -> None:
    assert_published_as_by_the_mapper(any_store)


def test_a_customer_redriven_is_published_as_in_the_log(any_store: EventStore) -> None:
    generated_store(any_store, seed=3)
    feed = StoreFeed(any_store)
    everything = feed.read_published(0, 100_000)
    customer = everything[-1].customer_key
    mine = [p for p in everything if p.customer_key == customer]
    assert feed.customer_published(UUID(customer), 0, 10_000) == mine
    assert feed.customer_published(UUID(customer), 1, 10_000, until=mine[-1].position - 1) == [
        p for p in mine[1:] if p.position < mine[-1].position
    ]


def test_published_of_an_envelope_is_its_bytes(any_store: EventStore) -> None:
    all_event_types_story(
        CommandService(any_store, default_region="DE", index_key="k"), Context(actor="t")
    )
    for envelope in StoreFeed(any_store).read_sealed(0, 1000):
        published = Published.of(envelope)
        assert published.value == envelope.to_bytes()
        assert published.kafka_headers() == envelope.kafka_headers()
