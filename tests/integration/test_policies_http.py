"""``GET/PUT /v1/policies/{name}`` in-process: admin only, versions with ETag and If-Match
(428 without one once defined, 412 on another), validation problems naming the field, the
version history, and automatic stage changes that show their rule and version in a
customer's history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from bootstrap.policy_processes import lifecycle_runner
from tests.api_support import Api, running_api

PROBLEM = "application/problem+json"
URL = "/v1/policies/lifecycle"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as running:
        yield running


def put(api: Api, body: Any, who: str = "admin", **headers: str) -> Any:
    return api.client.put(URL, json=body, headers=api.headers(who, **headers))


def test_versions_etag_and_if_match(api: Api) -> None:
    assert api.client.get(URL, headers=api.headers("admin")).status_code == 404
    first = put(api, {"document": {}})
    assert first.status_code == 200 and first.headers["etag"] == '"1"'
    assert first.json()["document"]["at_risk"]["min_days"] == 30
    assert first.json()["actor"] == "key:admin" and first.json()["changed"] is True
    change = {"document": {"active": {"window_days": 60}}}
    missing = put(api, change)
    assert missing.status_code == 428 and missing.headers["content-type"] == PROBLEM
    stale = put(api, change, **{"If-Match": '"7"'})
    assert stale.status_code == 412 and stale.json()["type"] == "/problems/precondition-failed"
    second = put(api, change, **{"If-Match": '"1"'})
    assert second.status_code == 200 and second.json()["version"] == 2
    same = put(api, change, **{"If-Match": '"2"'})
    assert same.json()["changed"] is False and same.headers["etag"] == '"2"'
    current = api.client.get(URL, headers=api.headers("admin"))
    assert current.json()["document"]["active"]["window_days"] == 60
    older = api.client.get(f"{URL}?version=1", headers=api.headers("admin"))
    assert older.json()["version"] == 1 and older.headers["etag"] == '"2"'
    assert api.client.get(f"{URL}?version=3", headers=api.headers("admin")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"document": {"at_risk": {"gap_multiple": 3, "min_days": "30", "max_days": 9}}},
            "document.at_risk.min_days",
        ),
        (
            {"document": {"churned": {"gap_multiple": 1, "min_days": 90, "max_days": 365}}},
            "document.churned.gap_multiple",
        ),
        ({"document": {"loyal": {"min_spend": 10}}}, "document.loyal.min_spend"),
        ({"document": {"sometimes": 1}}, "document.sometimes"),
        ({"document": []}, "document"),
        ({"document": {}, "effective_at": "2026-01-01"}, "effective_at"),
        ({"document": {}, "extra": 1}, "extra"),
        ({}, "document"),
    ],
)
def test_an_invalid_policy_is_a_422_naming_the_field(api: Api, body: Any, field: str) -> None:
    answer = put(api, body)
    assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM
    assert answer.json()["field"] == field, answer.json()
    assert api.client.get(URL, headers=api.headers("admin")).status_code == 404  # nothing stored


def test_only_admins_and_only_known_policies(api: Api) -> None:
    for role in ("reader", "writer", "auditor"):
        assert put(api, {"document": {}}, role).status_code == 403
        assert api.client.get(URL, headers=api.headers(role)).status_code == 403
    unknown = api.client.put(
        "/v1/policies/astrology", json={"document": {}}, headers=api.headers("admin")
    )
    assert unknown.status_code == 404 and unknown.json()["type"] == "/problems/not-found"
    malformed = put(api, {"document": {}}, **{"If-Match": "1"})
    assert malformed.status_code == 422 and malformed.json()["field"] == "If-Match"


def test_automatic_changes_name_rule_and_version_in_the_history(api: Api) -> None:
    start = datetime.now(UTC) - timedelta(days=100)
    put(api, {"document": {}, "effective_at": start.isoformat()})
    writer = api.headers("writer")
    body = {"name": "Ada", "occurred_at": start.isoformat()}
    cid = api.client.post("/v1/customers", json=body, headers=writer).json()["customer_id"]
    for day in (1, 6):
        purchase = {
            "order_id": f"o-{day}",
            "amount": "5.00",
            "currency": "EUR",
            "occurred_at": (start + timedelta(days=day)).isoformat(),
        }
        answer = api.client.post(f"/v1/customers/{cid}/purchases", json=purchase, headers=writer)
        assert answer.status_code == 200, answer.text
    services = api.app.state.services
    report = lifecycle_runner(services).sweep()
    assert report.recorded == 3  # active at day 6; at risk at day 36; churned at day 96
    position = str(services.store.history(UUID(cid))[-1][0])
    history = api.client.get(
        f"/v1/customers/{cid}/history",
        headers=api.headers("auditor", **{"X-Min-Position": position}),
    )
    reasons = [
        (item["type"], item["actor"], item["data"].get("reason"))
        for item in history.json()["items"]
    ]
    assert reasons[-3:] == [
        (
            "customer.lifecycle_stage_changed",
            "clientele:policy-lifecycle",
            "policy lifecycle v1, rule active_repeat_purchases",
        ),
        (
            "customer.lifecycle_stage_changed",
            "clientele:policy-lifecycle",
            "policy lifecycle v1, rule at_risk_after_inactivity",
        ),
        (
            "customer.churned",
            "clientele:policy-lifecycle",
            "policy lifecycle v1, rule churned_after_inactivity",
        ),
    ]
