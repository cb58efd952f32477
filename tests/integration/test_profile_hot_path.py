"""GET profile's hot path (:mod:`api.http.hot_path`, issue 16 round 7) on PostgreSQL: it answers
what FastAPI's route answers (status, bytes, headers but the request's own ids) for every role,
the edge middleware still logs and measures it under the route's template, and every request
it does not answer 200 (no key, a bad key, the wrong role, an unknown or merged customer, an id
not in canonical form, a key over its rate limit) reaches the route, which answers as before,
with each request counted once against the key's rate limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from infra.api_keys import KeyStore
from tests.api_support import Api, answer, hot_path, running_api, send

pytestmark = pytest.mark.integration

WHO = ("reader", "reader+pii", "admin", "writer+reader", "auditor")


def _customers(api: Api) -> tuple[str, str]:
    """A live customer with personal data, and one merged into it."""
    live = send(api, "POST", "/v1/customers", {"name": "Zoë Ångström", "email": "zoe@example.com"})
    other = send(api, "POST", "/v1/customers", {"name": "Zoe A", "phone": "+49 30 1234567"})
    survivor, duplicate = live.json()["customer_id"], other.json()["customer_id"]
    merged = send(api, "POST", f"/v1/customers/{survivor}/merge", {"duplicate_id": duplicate})
    assert merged.status_code == 200, merged.text
    runner = api.app.state.services.runner
    assert runner is not None
    runner.catch_up()
    return survivor, duplicate


def test_the_hot_path_answers_what_the_route_answers(tmp_path: Path, postgres_url: str) -> None:
    with running_api(tmp_path, postgres_url) as api:
        live, merged = _customers(api)
        hot = hot_path(api)
        cases = [
            (f"/v1/customers/{customer}", api.headers(who))
            for customer in (live, merged, uuid4(), live.upper())
            for who in WHO
        ]
        cases += [
            (f"/v1/customers/{live}", {}),
            (f"/v1/customers/{live}", {"Authorization": "Bearer clt_nope_nope"}),
            (f"/v1/customers/{live}", {"Authorization": "Basic abc"}),
            (f"/v1/customers/{live}", api.headers("writer")),
            ("/v1/customers/not-a-uuid", api.headers("reader")),
        ]
        answered = {"hot": 0, "route": 0}
        for path, headers in cases:
            before = hot.answered
            # a query parameter the route ignores takes FastAPI's route, not the hot path
            via_route = answer(api, f"{path}?unused=1", headers)
            assert hot.answered == before
            via_hot = answer(api, path, headers)
            assert via_hot == via_route, (path, headers)
            answered["hot" if hot.answered > before else "route"] += 1
            if hot.answered > before:
                assert via_hot[0] == 200
        # the live customer, by each role that reads; everything else went to the route
        assert answered == {"hot": 4, "route": len(cases) - 4}, answered
        status, body, _ = answer(api, f"/v1/customers/{live}", api.headers("reader"))
        assert status == 200 and b"zoe@example.com" not in body  # masked without pii
        status, body, _ = answer(api, f"/v1/customers/{live}", api.headers("reader+pii"))
        assert status == 200 and b"zoe@example.com" in body


def test_hot_answers_are_logged_and_measured_under_the_route(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_api(tmp_path, postgres_url) as api:
        live, _ = _customers(api)
        metric = 'clientele_http_request_seconds_count{method="GET",route="/v1/customers/{customer_id}",status="200"}'

        def served() -> float:
            text = api.client.get("/metrics").text
            return next(
                (float(x.split()[-1]) for x in text.splitlines() if x.startswith(metric)), 0
            )

        before = served()
        answered = hot_path(api).answered
        capsys.readouterr()
        for _ in range(3):
            assert (
                api.client.get(f"/v1/customers/{live}", headers=api.headers("reader")).status_code
                == 200
            )
        assert hot_path(api).answered == answered + 3
        assert served() == before + 3
        logged = capsys.readouterr()
        lines = [line for line in (logged.out + logged.err).splitlines() if "http.request" in line]
        hot_lines = [
            line for line in lines if live in line and "/v1/customers/{customer_id}" in line
        ]
        assert len(hot_lines) >= 3, lines


def test_each_request_counts_once_against_the_rate_limit(tmp_path: Path, postgres_url: str) -> None:
    with running_api(tmp_path, postgres_url, rate_limit="5/minute") as api:
        live, merged = _customers(api)  # as admin: admin's own key
        reader = api.headers("reader")
        statuses = [
            api.client.get(f"/v1/customers/{customer}", headers=reader).status_code
            for customer in (live, merged, uuid4(), live, live, live)
        ]
        assert statuses == [200, 410, 404, 200, 200, 429], statuses
        reads = api.app.state.async_reads.stats()["requests_num"]
        refused = api.client.get(f"/v1/customers/{live}", headers=reader)
        assert refused.status_code == 429
        assert api.app.state.async_reads.stats()["requests_num"] == reads  # no read over the limit
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1


@pytest.mark.parametrize("read_models", ["sqlite", "postgres"])
def test_each_request_looks_its_key_up_once(
    tmp_path: Path,
    read_models: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request the hot path admits and hands on (SQLite read models, an ``X-Min-Position``,
    a merged customer) looked its key up there and again in the route: the route now takes
    the key the hot path found, or its failure, and the rate limit counts it once."""
    looked_up: list[str] = []
    authenticate = KeyStore.authenticate

    def counted(keys: KeyStore, token: str) -> Any:
        looked_up.append(f"Bearer {token}")
        return authenticate(keys, token)

    monkeypatch.setattr(KeyStore, "authenticate", counted)
    url = request.getfixturevalue("postgres_url") if read_models == "postgres" else None
    with running_api(tmp_path, url, rate_limit="6/minute") as api:
        live, merged = _customers(api)  # as admin: admin's own key
        reader = api.headers("reader")
        bad = {"Authorization": "Bearer clt_nope_nope"}
        hot = hot_path(api)
        for customer, headers, status in [
            (live, reader, 200),
            (merged, reader, 410),
            (live, reader | {"X-Min-Position": "1"}, 200),
            (live, bad, 401),
        ]:
            looked_up.clear()
            before = hot.answered
            response = api.client.get(f"/v1/customers/{customer}", headers=headers)
            assert response.status_code == status, response.text
            assert looked_up == [headers["Authorization"]], (customer, headers, looked_up)
            took_hot = read_models == "postgres" and customer == live and headers == reader
            assert hot.answered == before + took_hot
        # the reader's three requests above were counted once each: three more, then 429
        statuses = [api.client.get(f"/v1/customers/{live}", headers=reader).status_code]
        statuses += [api.client.get(f"/v1/customers/{live}", headers=reader).status_code]
        statuses += [api.client.get(f"/v1/customers/{live}", headers=reader).status_code]
        statuses += [api.client.get(f"/v1/customers/{live}", headers=reader).status_code]
        assert statuses == [200, 200, 200, 429], statuses
