"""Customer value through the real services, on SQLite and PostgreSQL: historical value (margin
where every item's cost is known, else revenue) before any fit; ``models fit`` records the spend
model per currency beside BG/NBD; ``GET /v1/analytics/value`` then lists every live customer's
predicted 12-month value as recomputed here from the test's own ledger, in order, paged, with
deciles; a segment on ``value.high_value`` holds exactly the top decile; refunds, a merge and
an erasure shape it; the read models equal their rebuilds."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from bootstrap import Services
from bootstrap.policy_processes import model_fitter
from commands import messages as m
from commands.service import Context
from consumers.rebuild import rebuild
from domain.btyd import expected_purchases
from domain.churn_model import summary_of
from domain.gamma_gamma import expected_spend
from projections.customer_value import ValueProjector
from projections.profiles import encode_cursor
from projections.segments import SegmentsProjector
from tests.api_support import Api, send
from tests.churn_support import simulate

DAY = timedelta(days=1)
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - 700 * DAY
CLERK = Context(actor="clerk")
CENT = Decimal("0.01")
Ledger = dict[UUID, dict[str, tuple[Decimal, Decimal | None, datetime]]]


def _load(services: Services) -> tuple[Ledger, UUID, UUID]:
    """The base, and the ledger of held orders: ``{customer: {order: (amount, cost, at)}}``."""
    rng = random.Random(11)
    ledger: Ledger = {}
    for n, c in enumerate(simulate(160, 0.8, 40.0, 0.6, 3.0, seed=7, days=(100, 650))):
        registered = services.commands.execute(
            m.RegisterCustomer(name=f"C{n}", occurred_at=START), CLERK
        )
        customer = registered.customer_id
        assert customer is not None
        first = NOW - timedelta(days=c.T)
        mean = rng.gammavariate(4.0, 1 / 0.2)  # this customer's mean spend
        orders = ledger[customer] = {}
        commands = []
        for i, t in enumerate(c.purchases):
            at = first + timedelta(days=t)
            amount = Decimal(str(max(rng.gammavariate(6.0, mean / 6.0), 1.0))).quantize(CENT)
            costed = n % 3 == 0 or (n % 3 == 1 and i % 2 == 0)  # margin, mixed, revenue
            items: list[dict[str, Any]] = [{"sku": "a", "quantity": 2, "unit_price": "1.00"}]
            if costed:
                items[0]["unit_cost"] = "0.75"
            orders[f"o-{n}-{i}"] = (amount, Decimal("1.50") if costed else None, at)
            commands.append(
                m.RecordPurchase(
                    customer_id=customer,
                    order_id=f"o-{n}-{i}",
                    amount=str(amount),
                    currency="EUR",
                    occurred_at=at,
                    items=items,
                )
            )
        outcomes = services.commands.execute_batch(commands, CLERK)
        assert [o.problem for o in outcomes if o.problem] == []
    ids = sorted(ledger, key=str)
    kinds = {c: n % 3 for n, c in enumerate(ledger)}  # 0 margin, 1 mixed, 2 revenue
    refunded = next(c for c in ids if len(ledger[c]) >= 2)
    order = sorted(ledger[refunded])[0]
    services.commands.execute(m.RefundPurchase(customer_id=refunded, order_id=order), CLERK)
    del ledger[refunded][order]
    # a margin customer merged into a revenue one: the survivor's value becomes mixed
    duplicate = next(c for c in ids if kinds[c] == 0 and c != refunded)
    survivor = next(c for c in ids if kinds[c] == 2 and c != refunded)
    services.commands.execute(m.MergeCustomers(customer_id=survivor, duplicate_id=duplicate), CLERK)
    ledger[survivor] |= ledger.pop(duplicate)
    erased = next(c for c in ids if c not in (refunded, duplicate, survivor))
    services.commands.execute(m.EraseCustomer(customer_id=erased), CLERK)
    del ledger[erased]
    return ledger, duplicate, erased


def _pages(api: Api, **params: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = {**params, "limit": 17, **({"cursor": cursor} if cursor else {})}
        got = api.client.get("/v1/analytics/value", params=query, headers=api.headers("reader"))
        assert got.status_code == 200, got.text
        body = got.json()
        items += body["items"]
        if (cursor := body["next_cursor"]) is None:
            return items, body
    raise AssertionError("paging did not end")


def _cursor(text: str) -> str:
    """A cursor as the API encodes them (base64url JSON), of any JSON."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _historical(orders: dict[str, tuple[Decimal, Decimal | None, datetime]]) -> str:
    return str(sum((a - (c or 0) for a, c, _ in orders.values()), Decimal(0)).quantize(CENT))


def _deciles(values: list[int]) -> list[int]:
    ordered = sorted(values)
    n = len(ordered)
    return [ordered[(k * n + 9) // 10 - 1] for k in range(1, 10)]


def test_value_before_and_after_a_fit_equals_the_ledger_and_a_rebuild(api: Api) -> None:
    services: Services = api.app.state.services
    ledger, duplicate, erased = _load(services)
    assert services.runner is not None
    services.runner.catch_up()

    items, last = _pages(api, by="historical")
    assert last["currency"] == "EUR" and last["population"] == len(ledger)
    expected = {str(c): _historical(o) for c, o in ledger.items()}
    assert {i["customer_id"]: i["historical"] for i in items} == expected
    assert str(duplicate) not in expected and str(erased) not in expected
    keys = [(-Decimal(i["historical"]), i["customer_id"]) for i in items]
    assert keys == sorted(keys)
    assert {i["basis"] for i in items} == {"margin", "mixed", "revenue"}
    assert all(i["predicted"] is None for i in items)
    cuts = _deciles([int(Decimal(v).scaleb(2)) for v in expected.values()])
    assert last["cuts"] == [str(Decimal(c).scaleb(-2).quantize(CENT)) for c in cuts]
    assert _pages(api, by="predicted")[0] == []  # no fit yet

    fitted = model_fitter(services).fit(NOW - DAY, 30, Context(actor="analyst"))
    spend = fitted.version.spend_parameters("EUR")
    assert spend is not None and fitted.view()["spend"]["currencies"]["EUR"]["customers"] >= 10
    services.runner.catch_up()
    items, last = _pages(api)
    assert len(items) == len(ledger) == last["population"]
    for item in items:
        orders = ledger[UUID(item["customer_id"])]
        instants = [at for _, _, at in orders.values()]
        summary = summary_of(instants, max(fitted.version.as_of, *instants))
        assert summary is not None
        days: dict[Any, Decimal] = {}
        for amount, _, at in orders.values():
            days[at.date()] = days.get(at.date(), Decimal(0)) + amount
        repeat = [days[d] for d in sorted(days)[1:]]
        monetary = (sum(repeat, Decimal(0)) / len(repeat)).quantize(CENT) if repeat else 0
        purchases = expected_purchases(fitted.version.parameters, summary, 365)
        each = expected_spend(spend, summary.frequency, float(monetary))
        assert each is not None
        assert item["predicted"] == str(Decimal(repr(purchases * each)).quantize(CENT))
        assert item["model_version"] == 1
    keys = [(-Decimal(i["predicted"]), i["customer_id"]) for i in items]
    assert keys == sorted(keys)
    top = [i for i in items if i["high_value"]]
    assert top == items[: len(top)] and {i["decile"] for i in top} == {10}
    assert 0 < len(top) <= len(items) // 10 + 1
    assert sum(d["customers"] for d in last["deciles"]) == len(items)

    # the segment field: the same top decile, decided from the segments read model's own folds
    rule = {"field": "value.high_value", "op": "eq", "value": True}
    defined = send(api, "PUT", "/v1/segments/high-value", {"name": "High value", "rule": rule})
    assert defined.status_code in (200, 201), defined.text
    position = defined.json()["position"]
    members = api.client.get(
        "/v1/segments/high-value/members?limit=1000",
        headers=api.headers("reader", **{"X-Min-Position": str(position)}),
    ).json()["items"]
    assert {m["customer_id"] for m in members} == {i["customer_id"] for i in top}

    for projector in (ValueProjector(), SegmentsProjector()):
        verified = rebuild(services.feed, services.read_store, projector, verify_only=True)
        assert verified.differences == [], projector.name


def test_bad_questions_are_refused_naming_the_field(api: Api) -> None:
    reader = api.headers("reader")
    for params, field in (
        ({"currency": "eur"}, "currency"),
        ({"by": "future"}, "by"),
        ({"limit": 0}, "limit"),
        ({"cursor": "bm9wZQ"}, "cursor"),
        ({"cursor": _cursor('["EUR", "predicted", 1000000000000000000000000, "x"]')}, "cursor"),
        ({"cursor": encode_cursor("EUR", "predicted", True, "x")}, "cursor"),
        ({"cursor": encode_cursor("EUR", "soon", 1, "x")}, "cursor"),
        ({"cursor": encode_cursor("EUR", "historical", 1, "x"), "by": "predicted"}, "cursor"),
    ):
        got = api.client.get("/v1/analytics/value", params=params, headers=reader)
        assert got.status_code == 422, (params, got.text)
        assert field in got.text
    empty = api.client.get("/v1/analytics/value", headers=reader).json()
    assert (empty["currency"], empty["items"], empty["population"]) == (None, [], 0)
