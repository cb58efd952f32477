"""Loyalty over HTTP in-process: ``PUT /v1/policies/loyalty`` validation naming the field;
``POST /v1/customers/{id}/points:redeem`` (never below zero: 409 problem naming balance and
request; bad points 422 naming the field); ``POST /v1/customers/{id}/refunds`` (unknown order
422 naming ``order_id``; refunded order out of the profile); ``GET /v1/customers/{id}/loyalty``
with balance, lots and their expiry dates, tier with rule, version and the spend that decided
it; the same view however often it is asked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bootstrap.policy_processes import loyalty_runner
from tests.api_support import Api, running_api

PROBLEM = "application/problem+json"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=200)
POLICY = {
    "earn": {"EUR": "2"},
    "expiry_days": 100,
    "tiers": {"EUR": {"silver": "40", "gold": "500", "platinum": "5000"}},
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as running:
        yield running


def at(day: int) -> str:
    return (START + timedelta(days=day)).isoformat()


def customer_with_points(api: Api) -> str:
    """A customer who bought for 10 EUR on day 1 and 30 EUR on day 2 (20 + 60 points)."""
    admin, writer = api.headers("admin"), api.headers("writer")
    defined = api.client.put(
        "/v1/policies/loyalty", json={"document": POLICY, "effective_at": at(0)}, headers=admin
    )
    assert defined.status_code == 200, defined.text
    body = {"name": "Ada", "occurred_at": at(0)}
    cid: str = api.client.post("/v1/customers", json=body, headers=writer).json()["customer_id"]
    for day, amount in ((1, "10.00"), (2, "30.00")):
        purchase = {"order_id": f"o-{day}", "amount": amount, "currency": "EUR"}
        answer = api.client.post(
            f"/v1/customers/{cid}/purchases",
            json=purchase | {"occurred_at": at(day)},
            headers=writer,
        )
        assert answer.status_code == 200, answer.text
    assert loyalty_runner(api.app.state.services).sweep(START + timedelta(days=3)).rejected == 0
    return cid


def loyalty(api: Api, cid: str) -> Any:
    answer = api.client.get(f"/v1/customers/{cid}/loyalty", headers=api.headers("reader"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["etag"] == f'"{answer.json()["version"]}"'
    return answer.json()


def test_the_loyalty_view_shows_lots_with_expiry_dates_and_the_tier_spend(api: Api) -> None:
    cid = customer_with_points(api)
    view = loyalty(api, cid)
    assert view["balance"] == 80 and view["earned"] == 80
    assert [(lot["order_id"], lot["remaining"], lot["expires_on"]) for lot in view["lots"]] == [
        ("o-1", 20, (START + timedelta(days=101)).date().isoformat()),
        ("o-2", 60, (START + timedelta(days=102)).date().isoformat()),
    ]
    assert view["tier"] == {
        "name": "silver",
        "since": at(2),
        "reason": "policy loyalty v1, rule tier_qualified",
        "spend": {"EUR": "40.00"},
    }
    assert loyalty(api, cid) == view  # a pure fold: the same answer every time


def test_redeeming_takes_oldest_lots_first_and_never_below_zero(api: Api) -> None:
    cid = customer_with_points(api)
    writer = api.headers("writer")
    url = f"/v1/customers/{cid}/points:redeem"
    spent = api.client.post(url, json={"points": 30, "reason": "voucher"}, headers=writer)
    assert spent.status_code == 200, spent.text
    view = loyalty(api, cid)
    assert [(lot["order_id"], lot["remaining"]) for lot in view["lots"]] == [("o-2", 50)]
    too_much = api.client.post(url, json={"points": 51}, headers=writer)
    assert too_much.status_code == 409 and too_much.headers["content-type"] == PROBLEM
    problem = too_much.json()
    assert problem["type"] == "/problems/insufficient-points"
    assert (problem["balance"], problem["requested"]) == (50, 51)
    for bad in (0, -5, "7", 2.5, True, None):
        refused = api.client.post(url, json={"points": bad}, headers=writer)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["field"] == "points", bad
    assert loyalty(api, cid)["balance"] == 50  # nothing half-applied


def test_a_refund_takes_the_order_out_and_its_points_back(api: Api) -> None:
    cid = customer_with_points(api)
    writer = api.headers("writer")
    url = f"/v1/customers/{cid}/refunds"
    caught_up = api.headers("reader", **{"X-Min-Position": str(_head(api))})
    before = api.client.get(f"/v1/customers/{cid}/rfm", headers=caught_up).json()
    assert before["frequency"] == 1
    unknown = api.client.post(url, json={"order_id": "nope"}, headers=writer)
    assert unknown.status_code == 422 and unknown.json()["field"] == "order_id"
    body = {"order_id": "o-2", "reason": "returned", "occurred_at": at(4)}
    assert api.client.post(url, json=body, headers=writer).status_code == 200
    assert api.client.post(url, json=body, headers=writer).status_code == 200  # no-op
    assert loyalty_runner(api.app.state.services).sweep(START + timedelta(days=5)).recorded == 1
    view = loyalty(api, cid)
    assert (view["balance"], view["revoked"]) == (20, 60)
    profile = api.client.get(
        f"/v1/customers/{cid}",
        headers=api.headers("reader", **{"X-Min-Position": str(_head(api))}),
    ).json()
    assert profile["purchases"]["count"] == 1 and profile["points"] == 20
    rfm = api.client.get(
        f"/v1/customers/{cid}/rfm",
        headers=api.headers("reader", **{"X-Min-Position": str(_head(api))}),
    ).json()
    assert (rfm["frequency"], rfm["monetary"]) == (0, "0.00")  # the day-2 order is gone


def _head(api: Api) -> int:
    head: int = api.app.state.services.store.head()
    return head


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"earn": {"eur": "1"}}, "document.earn.eur"),
        ({"earn": {"EUR": "-1"}}, "document.earn.EUR"),
        ({"earn": {"EUR": 1}}, "document.earn.EUR"),
        ({"rounding": "nearest"}, "document.rounding"),
        ({"expiry_days": 0}, "document.expiry_days"),
        ({"tiers": {"EUR": {"silver": "100", "gold": "50"}}}, "document.tiers.EUR.gold"),
        ({"tiers": {"ABC": {}}}, "document.tiers.ABC"),
        ({"downgrade_grace_days": -1}, "document.downgrade_grace_days"),
        ({"bonus": 1}, "document.bonus"),
    ],
)
def test_bad_loyalty_documents_are_refused_naming_the_field(
    api: Api, document: dict[str, Any], field: str
) -> None:
    answer = api.client.put(
        "/v1/policies/loyalty", json={"document": document}, headers=api.headers("admin")
    )
    assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM, answer.text
    assert answer.json()["field"] == field
