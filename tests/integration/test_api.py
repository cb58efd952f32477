"""The HTTP API in-process: problem documents, concurrency headers, masking, roles per route."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from tests.api_support import Api, running_api

PROBLEM = "application/problem+json"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as running:
        yield running


def register(api: Api, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Ada Lovelace")
    response = api.client.post("/v1/customers", json=body, headers=api.headers("writer"))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def test_register_read_back_with_read_your_writes(api: Api) -> None:
    written = register(api, email="ADA@example.com", phone="030 901820")
    headers = api.headers("reader+pii", **{"X-Min-Position": str(written["position"])})
    profile = api.client.get(f"/v1/customers/{written['customer_id']}", headers=headers)
    assert profile.status_code == 200 and profile.headers["etag"] == '"1"'
    assert profile.json()["email"] == "ada@example.com" and profile.json()["phone"] == "+4930901820"


def test_readers_without_pii_see_masked_personal_data(api: Api) -> None:
    written = register(
        api, email="ada@example.com", phone="+4930901820", attributes={"city": "Berlin"}
    )
    headers = api.headers("reader", **{"X-Min-Position": str(written["position"])})
    masked = api.client.get(f"/v1/customers/{written['customer_id']}", headers=headers).json()
    assert (masked["name"], masked["email"], masked["phone"]) == (
        "A***",
        "a***@example.com",
        "+49******20",
    )
    assert masked["attributes"] == {"city": "***"}
    listed = api.client.get("/v1/customers", headers=headers).json()["items"]
    assert listed[0]["email"] == "a***@example.com"


def test_problem_documents_for_bad_input(api: Api) -> None:
    writer = api.headers("writer")
    taken = register(api, email="ada@example.com")
    conflict = api.client.post(
        "/v1/customers", json={"name": "B", "email": "Ada@Example.com"}, headers=writer
    )
    assert conflict.status_code == 409 and conflict.headers["content-type"] == PROBLEM
    assert conflict.json()["type"] == "/problems/email-taken"
    assert conflict.json()["existing_customer_id"] == taken["customer_id"]
    for body, field in [
        ({"name": ""}, "name"),
        ({"name": "x", "email": "nope"}, "email"),
        ({"nam": "x"}, "name"),
    ]:
        bad = api.client.post("/v1/customers", json=body, headers=writer)
        assert bad.status_code == 422 and bad.json()["type"] == "/problems/validation", bad.text
        assert bad.json()["field"] == field
    garbage = api.client.post(
        "/v1/customers", content=b"{oops", headers={**writer, "content-type": "application/json"}
    )
    assert garbage.status_code == 422 and garbage.headers["content-type"] == PROBLEM
    missing = api.client.get(f"/v1/customers/{uuid4()}", headers=api.headers("reader"))
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/not-found"


def test_if_match_and_idempotency_key(api: Api) -> None:
    cid = register(api)["customer_id"]
    writer = api.headers("writer")
    required = api.client.patch(f"/v1/customers/{cid}", json={"name": "A"}, headers=writer)
    assert (
        required.status_code == 428 and required.json()["type"] == "/problems/precondition-required"
    )
    stale = api.client.patch(
        f"/v1/customers/{cid}", json={"name": "A"}, headers={**writer, "If-Match": '"5"'}
    )
    assert stale.status_code == 412 and stale.json()["type"] == "/problems/version-conflict"
    done = api.client.patch(
        f"/v1/customers/{cid}", json={"name": "A"}, headers={**writer, "If-Match": '"1"'}
    )
    assert done.status_code == 200 and done.headers["etag"] == '"2"'
    keyed = {**writer, "Idempotency-Key": "order-77"}
    body = {"order_id": "77", "amount": "12.50", "currency": "EUR"}
    first = api.client.post(f"/v1/customers/{cid}/purchases", json=body, headers=keyed)
    again = api.client.post(f"/v1/customers/{cid}/purchases", json=body, headers=keyed)
    assert first.json() == again.json()
    other = api.client.post(
        f"/v1/customers/{cid}/purchases", json={**body, "amount": "13"}, headers=keyed
    )
    assert other.status_code == 422 and other.json()["type"] == "/problems/idempotency-key-reused"


def test_gone_for_erased_and_merged(api: Api) -> None:
    survivor, duplicate, erased = (register(api, name=n)["customer_id"] for n in ("S", "D", "E"))
    admin = api.headers("admin")
    api.client.post(
        f"/v1/customers/{survivor}/merge", json={"duplicate_id": duplicate}, headers=admin
    )
    last = api.client.delete(f"/v1/customers/{erased}", headers=admin).json()["position"]
    reader = api.headers("reader", **{"X-Min-Position": str(last)})
    merged = api.client.get(f"/v1/customers/{duplicate}", headers=reader)
    assert merged.status_code == 410 and merged.json()["survivor_id"] == survivor
    assert (
        api.client.get(f"/v1/customers/{erased}", headers=reader).json()["type"]
        == "/problems/gone-erased"
    )
    write = api.client.put(f"/v1/customers/{duplicate}/tags/x", headers=api.headers("writer"))
    assert write.status_code == 410 and write.json()["type"] == "/problems/gone-merged"


def test_min_position_not_reached_is_503_with_retry_after(api: Api) -> None:
    cid = register(api)["customer_id"]
    late = api.client.get(
        f"/v1/customers/{cid}", headers=api.headers("reader", **{"X-Min-Position": "10000"})
    )
    assert late.status_code == 503 and late.headers["retry-after"] == "1"


# ------------------------------------------------------------------ role x route matrix

# Every route the app serves, with the role it admits ("public": anyone, no key needed;
# "a|b": either role).
# The list of routes comes from the app itself (`served_routes`), so a route added later
# fails the matrix until its expectation is declared here.
ROUTE_ROLE = {
    ("POST", "/v1/customers"): "writer",
    ("PATCH", "/v1/customers/{customer_id}"): "writer",
    ("POST", "/v1/customers/{customer_id}/contacts"): "writer",
    ("PUT", "/v1/customers/{customer_id}/tags/{tag}"): "writer",
    ("DELETE", "/v1/customers/{customer_id}/tags/{tag}"): "writer",
    ("POST", "/v1/customers/{customer_id}/purchases"): "writer",
    ("POST", "/v1/customers/{customer_id}/feedback"): "writer",
    ("PUT", "/v1/customers/{customer_id}/consents/{purpose}"): "writer",
    ("POST", "/v1/customers/{customer_id}/lifecycle"): "writer",
    ("POST", "/v1/customers/{customer_id}/churn"): "writer",
    ("POST", "/v1/customers/{customer_id}/reactivate"): "writer",
    ("POST", "/v1/customers/{customer_id}/refunds"): "writer",
    ("POST", "/v1/customers/{customer_id}/points:redeem"): "writer",
    ("GET", "/v1/customers/{customer_id}/loyalty"): "reader",
    ("POST", "/v1/customers/{customer_id}/merge"): "admin",
    ("POST", "/v1/customers/{customer_id}/unmerge"): "admin",
    ("DELETE", "/v1/customers/{customer_id}"): "admin",
    ("POST", "/v1/commands:batch"): "writer",
    ("GET", "/v1/customers/{customer_id}"): "reader",
    ("GET", "/v1/customers/by-external/{system}/{external_id}"): "reader",
    ("GET", "/v1/customers"): "reader",
    ("GET", "/projections"): "public",
    ("GET", "/v1/segments"): "reader",
    ("GET", "/v1/care/agenda"): "reader",
    ("GET", "/v1/duplicates"): "reader",
    ("POST", "/v1/duplicates/{pair_id}/dismiss"): "admin",
    ("POST", "/v1/duplicates/{pair_id}/merge"): "admin",
    ("PUT", "/v1/segments/{segment_id}"): "admin",
    ("POST", "/v1/segments/{segment_id}"): "admin",
    ("GET", "/v1/segments/{segment_id}/members"): "reader",
    ("GET", "/v1/policies/{name}"): "admin",
    ("PUT", "/v1/policies/{name}"): "admin",
    ("GET", "/v1/analytics/lifecycle"): "reader",
    ("GET", "/v1/analytics/rfm"): "reader",
    ("GET", "/v1/customers/{customer_id}/rfm"): "reader",
    ("GET", "/v1/analytics/churn"): "reader",
    ("GET", "/v1/analytics/satisfaction"): "reader",
    ("GET", "/v1/analytics/value"): "reader",
    ("GET", "/v1/customers/{customer_id}/recommendations"): "reader",
    ("GET", "/v1/audit/verify"): "auditor",
    ("GET", "/v1/audit/events"): "auditor",
    ("GET", "/v1/audit/export"): "auditor",
    ("GET", "/v1/customers/{customer_id}/history"): "auditor",
    ("GET", "/v1/customers/{customer_id}/consents/history"): "auditor",
    ("POST", "/v1/campaigns"): "marketer",
    ("GET", "/v1/campaigns"): "marketer|reader",
    ("GET", "/v1/campaigns/{campaign_id}"): "marketer|reader",
    ("PATCH", "/v1/campaigns/{campaign_id}"): "marketer",
    ("POST", "/v1/campaigns/{campaign_id}/schedule"): "marketer",
    ("POST", "/v1/campaigns/{campaign_id}/cancel"): "marketer",
    ("POST", "/v1/campaigns/{campaign_id}/launch"): "marketer",
    ("POST", "/v1/campaigns/{campaign_id}/complete"): "marketer",
    ("GET", "/v1/campaigns/{campaign_id}/results"): "marketer|reader",
    ("GET", "/v1/campaigns/{campaign_id}/audience"): "marketer",
    ("GET", "/healthz"): "public",
    ("GET", "/readyz"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/openapi.json"): "public",
    ("GET", "/docs"): "public",
    ("GET", "/docs/oauth2-redirect"): "public",
    ("GET", "/redoc"): "public",
    ("GET", "/static-offline-docs/{file}"): "public",
}
ROLES = ["reader", "writer", "auditor", "marketer", "admin"]
# A value for each path parameter of a route (a new parameter needs one here).
SAMPLES = {
    "tag": "vip",
    "purpose": "email_marketing",
    "segment_id": "vips",
    "system": "shop",
    "external_id": "00042",
    "name": "lifecycle",
    "file": "swagger-ui.css",
    "campaign_id": "00000000-0000-4000-8000-000000000000",
    "pair_id": "00000000-0000-4000-8000-000000000001~00000000-0000-4000-8000-000000000002",
}


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of everything ``app`` answers: API routes, plain routes and
    mounts (as ``{file}`` below their prefix), whether in the OpenAPI document or not; the
    HEAD that Starlette adds beside a GET is not listed separately."""
    served = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", context.path or "")
        if isinstance(route, Mount):
            served.add(("GET", f"{path}/{{file}}"))
            continue
        methods = set(getattr(route, "methods", None) or ())
        assert methods, f"{path}: a route without methods ({type(route).__name__})"
        if "GET" in methods:
            methods.discard("HEAD")
        served |= {(method, path) for method in methods}
    return served


def test_the_matrix_lists_every_served_route_and_only_those(api: Api) -> None:
    served = served_routes(api.app)
    undeclared = served - set(ROUTE_ROLE)
    assert not undeclared, f"declare the role of every new route in ROUTE_ROLE: {undeclared}"
    assert set(ROUTE_ROLE) == served, f"not served any more: {set(ROUTE_ROLE) - served}"
    documented = {
        (method.upper(), path)
        for path, item in api.app.openapi()["paths"].items()
        for method in item
    }
    assert documented <= served


def test_every_route_admits_exactly_its_roles(api: Api) -> None:
    served = served_routes(api.app)
    assert served == set(ROUTE_ROLE), "declare the role of every new route in ROUTE_ROLE"
    cid = register(api)["customer_id"]
    for method, path in sorted(served):
        needed = ROUTE_ROLE[(method, path)]
        unknown = set(re.findall(r"\{(\w+)\}", path)) - {"customer_id", *SAMPLES}
        assert not unknown, f"{path}: give SAMPLES a value for {unknown}"
        url = path.format(customer_id=cid, **SAMPLES)
        anonymous = api.client.request(method, url, json={})
        if needed == "public":
            assert anonymous.status_code == 200, (method, path, anonymous.status_code)
            continue
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"], (
            method,
            path,
        )
        bogus = api.client.request(
            method, url, json={}, headers={"Authorization": "Bearer clt_nope_x"}
        )
        assert bogus.status_code == 401, (method, path)
        for role in ROLES:
            answer = api.client.request(method, url, json={}, headers=api.headers(role))
            allowed = role in needed.split("|") or role == "admin"
            if allowed:
                assert answer.status_code not in (401, 403), (method, path, role, answer.text)
            else:
                assert answer.status_code == 403, (method, path, role, answer.status_code)
                assert answer.json()["type"] == "/problems/forbidden"


def test_edge_refuses_oversized_and_non_json_bodies(api: Api) -> None:
    writer = api.headers("writer")
    huge = api.client.post(
        "/v1/customers",
        content=b"x" * 2_000_000,
        headers={**writer, "content-type": "application/json"},
    )
    assert huge.status_code == 413 and huge.json()["type"] == "/problems/payload-too-large"
    xml = api.client.post(
        "/v1/customers",
        content=b"<name>x</name>",
        headers={**writer, "content-type": "application/xml"},
    )
    assert xml.status_code == 415 and xml.headers["content-type"] == PROBLEM


def test_correlation_id_reaches_the_events_and_metrics_count_it(api: Api) -> None:
    written = api.client.post(
        "/v1/customers",
        json={"name": "Ada"},
        headers=api.headers("writer", **{"X-Correlation-Id": "trace-42"}),
    )
    assert written.headers["x-correlation-id"] == "trace-42" and written.headers["x-request-id"]
    store = api.app.state.services.store
    event = next(store.customer_events(UUID(written.json()["customer_id"])))
    assert event.correlation_id == "trace-42" and event.actor == "key:writer"
    metrics = api.client.get("/metrics").text
    assert 'clientele_commands_total{command="register",outcome="accepted"}' in metrics
    assert 'clientele_projection_position{projection="profiles"}' in metrics
    assert "clientele_http_request_seconds_bucket" in metrics
