"""Issue 16: projections fed in log order (segments, value, recommendations) are rebuilt
customer by customer with the others up to the first event that crosses customers, and in
log order from there; the result equals the live tables, row for row, wherever that event
falls (none, a segment definition, a merge). Runs on SQLite and on a real PostgreSQL. The
history before the cut has what every log-order projection reads: profiling consent, purchases
with sku items (recommendations' shared ``recs_*`` rows), a refund and an erasure; on
PostgreSQL the customers are also replayed by two worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from uuid import UUID

import pytest

from bootstrap.services import worker_connections
from commands import messages as m
from commands.segments import SegmentService
from commands.service import CommandService
from consumers.embedded import EmbeddedRunner
from consumers.rebuild import rebuild_all
from consumers.rebuild_by_customer import log_order_cut
from consumers.store_feed import StoreFeed
from infra.readstore import ReadStore, open_read_store
from infra.settings import Settings
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
    """A purchase of two skus (shared between customers) and a tag for each customer."""
    for k, customer in enumerate(customers):
        items = [{"sku": f"sku{(k + i) % 3}", "category": f"c{i}", "quantity": 1} for i in (0, 1)]
        order = m.RecordPurchase(
            customer_id=customer,
            order_id=f"o{round_}-{k}",
            amount=f"{k + 1}.50",
            currency="EUR",
            items=items,
        )
        service.execute(order, CTX)
        tag = m.TagCustomer(customer_id=customer, tag="vip" if k % 2 else f"t{round_}")
        service.execute(tag, CTX)


def _history(service: CommandService, count: int) -> list[UUID]:
    """``count`` customers with profiling consent and a day of purchases, one of them refunded;
    and one more customer, consenting and buying, then erased. Returns the ``count``."""
    customers = [_register(service, f"Customer {k}") for k in range(count + 1)]
    for customer in customers:
        consent = m.SetConsent(customer_id=customer, purpose="profiling", granted=True)
        service.execute(consent, CTX)
    _everyday(service, customers, 1)
    service.execute(m.RefundPurchase(customer_id=customers[0], order_id="o1-0"), CTX)
    service.execute(m.EraseCustomer(customer_id=customers[-1]), CTX)
    return customers[:-1]


def _recommendation_rows(read_store: ReadStore) -> int:
    with read_store.transaction() as tx:
        return sum(
            len(tx.fetchall(f"SELECT * FROM {table}"))
            for table in ("recs_items", "recs_pairs", "recs_totals")
        )


def _rebuilt_equals_live(
    store: EventStore,
    read_store: ReadStore,
    projectors: list[Projector],
    **workers: object,
) -> None:
    """Verify, then rebuild in batches of 3 (``workers``: ``workers`` and ``connect``), and
    verify again: no differences. The recommendation tables are not empty."""
    assert _recommendation_rows(read_store) > 0
    feed = StoreFeed(store)
    verified = rebuild_all(feed, read_store, projectors, verify_only=True, batch_size=3)
    assert {r.name: r.differences for r in verified} == {p.name: [] for p in projectors}
    rebuild_all(feed, read_store, projectors, batch_size=3, **workers)  # type: ignore[arg-type]
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
    customers = _history(service, 5)
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


@pytest.mark.backends("postgres")  # parallel rebuild workers are a PostgreSQL tool
def test_two_workers_rebuild_what_live_built_row_for_row(
    store: EventStore,
    service: CommandService,
    read_store: ReadStore,
    projectors: list[Projector],
    database_url: str,
) -> None:
    """Workers replay ranges of customers side by side; recommendations add into rows every
    customer shares (commutative increments, locked in key order)."""
    customers = _history(service, 9)
    merge = m.MergeCustomers(customer_id=customers[0], duplicate_id=customers[1])
    service.execute(merge, CTX)
    _everyday(service, customers[2:], 2)
    feed = StoreFeed(store)
    EmbeddedRunner(feed, read_store, projectors, batch_size=4).catch_up()
    settings = Settings(database_url=database_url, read_database_url=database_url)
    connect = partial(worker_connections, settings)
    _rebuilt_equals_live(store, read_store, projectors, workers=2, connect=connect)
