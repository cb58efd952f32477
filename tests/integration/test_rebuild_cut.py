"""Issue 16: projections fed in log order (segments, value, recommendations) are rebuilt
customer by customer with the others up to the first event that crosses customers, and in
log order from there; the result equals the live tables, row for row, wherever that event
falls (none, a segment definition, a merge). Runs on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest

from commands import messages as m
from commands.segments import SegmentService
from commands.service import CommandService
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild_all
from consumers.rebuild_by_customer import log_order_cut
from consumers.store_feed import StoreFeed
from infra.readstore import ReadStore, open_read_store
from infra.store import EventStore
from projections.framework import Projector, ensure_schema
from projections.registry import all_projectors
from tests.integration.segments_support import CTX, VIP

LOG_ORDER = ("segments", "value", "recommend")  # fed in log order, crossed by merges


@pytest.fixture
def projectors() -> list[Projector]:
    return all_projectors()


@pytest.fixture
def read_store(database_url: str, projectors: list[Projector]) -> Iterator[ReadStore]:
    read_store = open_read_store(database_url)
    ensure_schema(read_store, projectors)
    yield read_store
    read_store.close()


def _register(service: CommandService, name: str) -> UUID:
    customer = service.execute(m.RegisterCustomer(name=name), CTX).customer_id
    assert customer is not None
    return customer


def _everyday(service: CommandService, customers: list[UUID], round_: int) -> None:
    """A purchase and a tag for each customer."""
    for k, customer in enumerate(customers):
        order = m.RecordPurchase(
            customer_id=customer, order_id=f"o{round_}-{k}", amount=f"{k + 1}.50", currency="EUR"
        )
        service.execute(order, CTX)
        tag = m.TagCustomer(customer_id=customer, tag="vip" if k % 2 else f"t{round_}")
        service.execute(tag, CTX)


def _rebuilt_equals_live(
    store: EventStore, read_store: ReadStore, projectors: list[Projector]
) -> None:
    """Verify, then rebuild in batches of 3, and verify again: no differences."""
    feed = StoreFeed(store)
    verified = rebuild_all(feed, read_store, projectors, verify_only=True, batch_size=3)
    assert {r.name: r.differences for r in verified} == {p.name: [] for p in projectors}
    rebuild_all(feed, read_store, projectors, batch_size=3)
    again = rebuild_all(feed, read_store, projectors, verify_only=True, batch_size=5)
    assert {r.name: r.differences for r in again} == {p.name: [] for p in projectors}


@pytest.mark.parametrize("crossing", ["none", "segment", "merge"])
def test_log_order_projections_replay_by_customer_up_to_the_first_crossing_event(
    crossing: str,
    store: EventStore,
    service: CommandService,
    read_store: ReadStore,
    projectors: list[Projector],
) -> None:
    customers = [_register(service, f"Customer {k}") for k in range(5)]
    _everyday(service, customers, 1)
    feed = StoreFeed(store)
    head = feed.head()
    cuts = {p.name: log_order_cut(feed, p, head) for p in projectors}
    assert {cuts[name] for name in LOG_ORDER} == {head}  # only customers' own events so far
    assert cuts["duplicates"] < head  # scored against other customers: log order throughout
    assert {cuts[p.name] for p in projectors if not p.log_order} == {head}
    if crossing == "segment":
        first = SegmentService(store).define("vip", "VIP", VIP, None, CTX).position
    elif crossing == "merge":
        merge = m.MergeCustomers(customer_id=customers[0], duplicate_id=customers[1])
        service.execute(merge, CTX)
        first = _first_crossing(feed, head)
    else:
        first = 0
    _everyday(service, customers[2:], 2)
    cuts = {p.name: log_order_cut(feed, p, feed.head()) for p in projectors}
    cut = first - 1 if first else feed.head()
    assert {cuts[name] for name in LOG_ORDER} == {cut}
    assert cut >= head  # everything before the crossing event is replayed by customer
    EmbeddedRunner(feed, read_store, projectors, batch_size=4).catch_up()
    _rebuilt_equals_live(store, read_store, projectors)


def _first_crossing(feed: StoreFeed, after: int) -> int:
    """Position of the first merge event after ``after``."""
    merges = {"customer.merged_into", "customer.duplicate_absorbed", "customer.unmerged"}
    return min(e.position for e in feed.read(after, 100) if e.type in merges)
