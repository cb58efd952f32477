"""Time travel's lean read path (:mod:`infra.lean_history`) against the long way it replaced:
the same envelopes and the same answers, byte for byte, over a varied generated store
(:mod:`tests.published_support`: every event type, sealed personal data, merges, unmerges,
erasures and events of older class versions); and a sealed token moved to another event is
refused on both paths."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from api.http.routes.reads import _travel
from commands import messages as m
from commands.models import ModelService
from commands.service import CommandService, Context
from domain.errors import CustomerNotFound
from infra import lean_history
from infra.backends.base import as_uuid
from infra.envelope import Envelope
from infra.lean_history import opened_history
from infra.personal_data import SealBroken
from infra.readstore import open_read_store
from infra.store import CUSTOMER_TOPICS, EventStore
from projections import profile_fold
from projections.churn import risk_in_view
from tests.published_support import generated_store


def the_long_way(store: EventStore, customer_id: UUID) -> list[Envelope]:
    """What time travel folded before: the mapper's domain events, opened, as envelopes."""
    return [Envelope.from_event(event, position) for position, event in store.history(customer_id)]


def answer_the_long_way(
    store: EventStore,
    customer_id: UUID,
    as_of: datetime | None,
    known_at: datetime | None,
    version: int | None,
) -> dict[str, Any]:
    """The time-travel route's document as the code before the lean path made it (its fold
    too: every envelope the view keeps folded in full, bookkeeping included)."""
    history = store.history(customer_id)
    envelopes = (Envelope.from_event(event, position) for position, event in history)
    state = profile_fold.empty(customer_id)
    for envelope in profile_fold.in_view(
        envelopes, as_of=as_of, known_at=known_at, version=version
    ):
        profile_fold.fold(state, envelope)
    if not state["version"]:
        raise CustomerNotFound(customer_id)
    moment = as_of or known_at or history[min(version or 1, len(history)) - 1][1].occurred_at
    document = profile_fold.render(state)
    document["churn_risk"] = risk_in_view(ModelService(store).get(), state, moment, known_at)
    return document


def _answer(call: Any, *args: Any) -> bytes:
    try:
        return orjson.dumps(call(*args), option=orjson.OPT_NON_STR_KEYS)
    except CustomerNotFound as missing:
        return f"not found: {missing}".encode()


def _request(store: EventStore) -> Any:
    """What the time-travel route reads of its request: the store and the churn models."""
    services = SimpleNamespace(store=store, models=ModelService(store))
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(services=services)))


def assert_travel_as_the_long_way(store: EventStore) -> None:
    """Every customer's envelopes, and the route's answers for views in business time,
    recorded time and by version, equal the long way's byte for byte."""
    legacy = generated_store(store)
    assert legacy > 0  # upcast events are among the compared
    linked = store.backend.in_log_order(CUSTOMER_TOPICS, 0, 100_000)
    customers = list(dict.fromkeys(as_uuid(n.originator_id) for n, _ in linked))
    request = _request(store)
    erased = sealed = 0
    for customer in customers:
        head, rows = store.backend.head_and_rows(customer)  # the backend contract
        assert head == store.head()
        positioned = [(p, StoredEvent(customer, v, t, s)) for p, v, t, s in rows]
        assert positioned == store.backend.positioned(customer, None)
        expected = the_long_way(store, customer)
        lean = list(opened_history(store, customer))
        assert lean == expected
        assert [e.to_bytes() for e in lean] == [e.to_bytes() for e in expected]
        erased += any(e.type == "customer.erased" for e in expected)
        stored = store.backend.positioned(customer, None)
        sealed += any(b'"_sealed"' in row.state for _, row in stored)
        first, last = expected[0], expected[-1]
        middle = expected[len(expected) // 2]
        views: list[tuple[datetime | None, datetime | None, int | None]] = [
            (last.occurred_at + timedelta(days=1), None, None),
            (middle.occurred_at, None, None),
            (first.occurred_at - timedelta(seconds=1), None, None),
            (None, middle.recorded_at, None),
            (middle.occurred_at, last.recorded_at, None),
            (None, None, 1),
            (None, None, middle.version),
            (None, None, last.version + 5),
            (last.occurred_at, None, 2),
        ]
        for view in views:
            ours = _answer(_travel, request, customer, *view)
            theirs = _answer(answer_the_long_way, store, customer, *view)
            assert ours == theirs, (customer, view)
    assert erased >= 3 and sealed >= 10 and len(customers) > 40
    # the lean path reads every row but the upcast ones (those take the mapper's path)
    read_long = [
        lean_history._lean(as_uuid(n.originator_id), n.id, n.originator_version, n.topic, n.state)
        is None
        for n, _ in linked
    ]
    assert sum(read_long) == legacy and len(read_long) > 700


def a_customer_with_contacts(store: EventStore) -> UUID:
    """A customer registered with personal data and two contacts recorded: three sealed
    events (versions 1 to 3)."""
    service = CommandService(store, default_region="DE", index_key="k")
    ctx = Context(actor="t")
    customer = service.execute(m.RegisterCustomer(name="Ada", email="ada@example.com"), ctx)
    assert customer.customer_id is not None
    for summary in ("hi", "again"):
        contact = m.RecordContact(
            customer_id=customer.customer_id, channel="email", direction="inbound", summary=summary
        )
        service.execute(contact, ctx)
    return customer.customer_id


def assert_a_moved_token_is_refused(store: EventStore, database_url: str, customer: UUID) -> None:
    """A sealed token copied into another of the customer's events (the tamper the seal's
    associated data catches) stops both paths with :class:`SealBroken`; time travel too,
    even to a view before the altered event (the whole history is opened, as before)."""
    rows = store.backend.positioned(customer, None)
    sealed = [s for _, s in rows if b'"_sealed"' in s.state]
    assert len(sealed) >= 2 and sealed[-1].originator_version > 2
    token = orjson.loads(sealed[0].state)["_sealed"]
    victim = orjson.loads(sealed[-1].state)
    victim["_sealed"] = token
    db = open_read_store(database_url)
    try:
        with db.transaction() as tx:
            where = customer if db.dialect == "postgres" else customer.hex
            tx.execute(
                f"UPDATE {store.events_table} SET state = ? "
                "WHERE originator_id = ? AND originator_version = ?",
                (orjson.dumps(victim), where, sealed[-1].originator_version),
            )
    finally:
        db.close()
    with pytest.raises(SealBroken):
        the_long_way(store, customer)
    with pytest.raises(SealBroken):
        list(opened_history(store, customer))
    with pytest.raises(SealBroken):
        _travel(_request(store), customer, None, None, 1)  # a view that ends well before it


def assert_an_erasure_elsewhere_is_forgotten(
    here: EventStore, elsewhere: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Time travel reads the log's head with the history (one exchange, no ``head()`` of its
    own) and still forgets, before opening anything, the key of a customer erased by another
    process (``elsewhere``) while ``here`` held it: the erased person reads as redacted in
    every event, also in those before the erasure."""
    customer = a_customer_with_contacts(here)
    registered, *_ = opened_history(here, customer)
    assert registered.data["name"] == "Ada"  # the key is held
    service = CommandService(elsewhere, default_region="DE", index_key="k")
    service.execute(m.EraseCustomer(customer_id=customer), Context(actor="t"))

    def no_head() -> int:
        raise AssertionError("time travel read the head apart from its history")

    monkeypatch.setattr(here, "head", no_head)
    opened = list(opened_history(here, customer))
    assert opened[-1].type == "customer.erased"
    assert (opened[0].data["name"], opened[0].data["email"]) == (None, None)  # redacted
    assert [e.data["summary"] for e in opened[1:3]] == [None, None]
