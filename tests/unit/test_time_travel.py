"""Bitemporal time travel (:func:`projections.profile_fold.travel`) against independent
computations, on random back-dated histories written through the command service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from commands import messages as m
from commands.service import CommandService, Context
from consumers.store_feed import StoreFeed
from infra.envelope import Envelope
from infra.store import EventStore
from projections import profile_fold

START = datetime(1997, 1, 1, tzinfo=UTC)
CTX = Context(actor="travel")
days = st.integers(0, 800)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("buy"), days),
        st.tuples(st.just("contact"), days),
        st.tuples(st.sampled_from(["tag", "untag"]), days, st.sampled_from(["vip", "gold"])),
        st.tuples(st.sampled_from(["churn", "reactivate"]), days),
        st.tuples(st.just("points"), days),
    ),
    max_size=12,
)


def _command(step: tuple[Any, ...], customer: UUID, number: int) -> m.Command:
    kind, day, *rest = step
    when = START + timedelta(days=day, hours=number)
    if kind == "buy":
        return m.RecordPurchase(
            customer_id=customer,
            order_id=f"o{number}",
            amount="2",
            currency="EUR",
            occurred_at=when,
        )
    if kind == "contact":
        return m.RecordContact(
            customer_id=customer, channel="email", direction="inbound", occurred_at=when
        )
    if kind in ("tag", "untag"):
        tagging = m.TagCustomer if kind == "tag" else m.UntagCustomer
        return tagging(customer_id=customer, tag=rest[0], occurred_at=when)
    if kind == "points":
        return m.EarnPoints(customer_id=customer, points=3, occurred_at=when)
    moving = m.ChurnCustomer if kind == "churn" else m.ReactivateCustomer
    return moving(customer_id=customer, occurred_at=when)


def _envelopes(store: EventStore, customer: UUID) -> list[Envelope]:
    return [e for e in StoreFeed(store).read(0, 10_000) if e.customer_id == customer]


@settings(max_examples=60, deadline=None)
@given(registered=st.integers(0, 400), steps=STEPS, probe=st.integers(-30, 900))
def test_a_view_as_of_a_business_time_folds_what_had_happened_by_then(
    registered: int, steps: list[tuple[Any, ...]], probe: int
) -> None:
    store = EventStore("memory://")
    service = CommandService(store, index_key="k")
    since = START + timedelta(days=registered)
    outcome = service.execute(m.RegisterCustomer(name="Ada", occurred_at=since), CTX)
    customer = outcome.customer_id
    assert customer is not None
    for number, step in enumerate(steps):
        service.execute_batch([_command(step, customer, number)], CTX)  # refusals are fine
    envelopes = _envelopes(store, customer)
    live = profile_fold.empty(customer)
    for envelope in envelopes:
        profile_fold.apply(live, envelope)
    assert profile_fold.travel(customer, envelopes) == live
    assert profile_fold.travel(customer, envelopes, as_of=datetime(2999, 1, 1, tzinfo=UTC)) == live

    moment = START + timedelta(days=probe)
    view = profile_fold.travel(customer, envelopes, as_of=moment)
    if since > moment:
        assert view is None  # not registered yet
        return
    assert view is not None
    happened = [e for e in envelopes if e.occurred_at <= moment]
    orders = [e for e in happened if e.type == "customer.purchase_recorded"]
    assert view["purchases"]["count"] == len(orders)
    dates = sorted(e.occurred_at.isoformat() for e in orders)
    assert view["purchases"]["first_at"] == (dates[0] if dates else None)
    assert view["contacts"]["count"] == sum(e.type == "customer.contacted" for e in happened)
    assert view["points"] == sum(3 for e in happened if e.type == "customer.points_earned")
    assert view["version"] == happened[-1].version
    assert view["registered_at"] == since.isoformat()


@settings(max_examples=40, deadline=None)
@given(steps=STEPS, cut=st.integers(0, 30))
def test_a_view_known_at_a_recorded_time_is_the_log_up_to_then(
    steps: list[tuple[Any, ...]], cut: int
) -> None:
    store = EventStore("memory://")
    service = CommandService(store, index_key="k")
    outcome = service.execute(m.RegisterCustomer(name="Ada", occurred_at=START), CTX)
    customer = outcome.customer_id
    assert customer is not None
    for number, step in enumerate(steps):
        service.execute_batch([_command(step, customer, number)], CTX)
    envelopes = _envelopes(store, customer)
    known = envelopes[: 1 + cut % len(envelopes)]
    expected = profile_fold.empty(customer)
    for envelope in known:
        profile_fold.apply(expected, envelope)
    at = known[-1].recorded_at
    assert profile_fold.travel(customer, envelopes, known_at=at) == expected
    assert profile_fold.travel(customer, envelopes, version=known[-1].version) == expected
    before = envelopes[0].recorded_at - timedelta(microseconds=1)
    assert profile_fold.travel(customer, envelopes, known_at=before) is None
