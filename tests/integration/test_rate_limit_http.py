"""Rate limiting per API key through the HTTP API: 429 problem+json with Retry-After."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api_support import Api, running_api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path, rate_limit="100/second;3/minute") as running:
        yield running


def test_a_key_over_its_limit_gets_429_with_retry_after_and_others_go_on(api: Api) -> None:
    reader = api.headers("reader")
    for _ in range(3):
        assert api.client.get("/v1/segments", headers=reader).status_code == 200
    refused = api.client.get("/v1/segments", headers=reader)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"] == "/problems/rate-limited" and problem["limit"] == "3 per 1 minute"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert problem["retry_after"] == int(refused.headers["retry-after"])
    # writes by the same key are limited too; another key is counted apart
    again = api.client.post("/v1/customers", json={"name": "Ada"}, headers=reader)
    assert again.status_code == 429
    assert api.client.get("/v1/segments", headers=api.headers("writer+reader")).status_code == 200
    # bad credentials are refused by authentication, never counted or limited
    for _ in range(5):
        bogus = {"Authorization": "Bearer clt_nope_x"}
        assert api.client.get("/v1/segments", headers=bogus).status_code == 401
    # open routes are not limited
    assert api.client.get("/healthz").status_code == 200


def test_no_limit_by_default(tmp_path: Path) -> None:
    with running_api(tmp_path) as api:
        reader = api.headers("reader")
        answers = {api.client.get("/v1/segments", headers=reader).status_code for _ in range(200)}
        assert answers == {200}
