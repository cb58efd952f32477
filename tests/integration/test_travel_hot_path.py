"""Time travel on GET profile's hot path (:mod:`api.http.hot_path`, issue 16 round 13): for
every query, customer and key it answers what FastAPI's route answers (status, bytes, headers
but the request's own ids), it answers every view the route answers 200 itself (and no other),
and each request counts once against the key's rate limit, whichever path answered it."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.api_support import Api, answer, hot_path, running_api, send

pytestmark = pytest.mark.integration

WHO = ("reader", "reader+pii", "admin", "auditor", "writer")
QUERIES = (
    "as_of=2099-01-01T00:00:00Z",
    "as_of=2099-01-01T00:00:00%2B02:00",
    "as_of=2099-01-01T00:00:00+02:00",  # a raw '+' is a space: 422
    "as_of=2099-01-01T00:00:00",  # no offset: 422
    "as_of=2099-01-01",  # a date: no offset, 422
    "as_of=4070908800",  # a Unix time is a datetime to the route's validation
    "as_of=2000-01-01T00:00:00Z",  # before the registration: 404
    "as_of=",
    "as_of=soon",
    "as_of=2000-01-01T00:00:00Z&as_of=2099-01-01T00:00:00Z",  # the last one counts
    "known_at=2099-01-01T00:00:00.5Z",
    "as_of=2099-01-01T00:00:00Z&known_at=2099-01-01T00:00:00Z",
    "version=1",
    "version=2",
    "version=99",
    "version=0",
    "version=-1",
    "version=two",
    "version=2&unused=1",
    "unused=1",  # no view in time: the live profile, from the route
    "as_of=2099-01-01T00:00:00Z&version=1",
)


def _customers(api: Api) -> dict[str, str]:
    """A live customer with personal data and contacts, one merged into it, one erased."""
    ids = {}
    for name, body in (
        ("live", {"name": "Zoë Ångström", "email": "zoe@example.com"}),
        ("merged", {"name": "Zoe A", "phone": "+49 30 1234567"}),
        ("erased", {"name": "Eve", "email": "eve@example.com"}),
    ):
        ids[name] = send(api, "POST", "/v1/customers", body).json()["customer_id"]
    for customer in (ids["live"], ids["erased"]):
        contact = {"channel": "email", "direction": "inbound", "summary": "hello"}
        assert send(api, "POST", f"/v1/customers/{customer}/contacts", contact).status_code == 200
    merge = {"duplicate_id": ids["merged"]}
    assert send(api, "POST", f"/v1/customers/{ids['live']}/merge", merge).status_code == 200
    assert send(api, "DELETE", f"/v1/customers/{ids['erased']}").status_code == 200
    ids["unknown"] = str(uuid4())
    return ids


async def _to_the_route(_request: Any, _customer_id: UUID) -> None:
    return None


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_the_hot_path_answers_time_travel_as_the_route_does(
    tmp_path: Path, database: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = request.getfixturevalue("postgres_url") if database == "postgres" else None
    with running_api(tmp_path, url) as api:
        customers = _customers(api)
        hot = hot_path(api)
        cases = [
            (f"/v1/customers/{customer}?{query}", api.headers(who))
            for customer in customers.values()
            for query in QUERIES
            for who in WHO
        ]
        live = customers["live"]
        cases += [
            (f"/v1/customers/{live}?version=1", {}),
            (f"/v1/customers/{live}?version=1", {"Authorization": "Bearer clt_nope_nope"}),
            (f"/v1/customers/{live.upper()}?version=1", api.headers("reader")),
        ]
        hot_statuses = []
        for path, headers in cases:
            before = hot.answered
            with monkeypatch.context() as only_route:
                only_route.setattr(hot, "_travel", _to_the_route, raising=False)
                via_route = answer(api, path, headers)
            assert hot.answered == before
            via_hot = answer(api, path, headers)
            assert via_hot == via_route, (path, headers)
            if hot.answered > before:
                hot_statuses.append(via_hot[0])
            elif via_hot[0] == 200:  # a 200 the route answered: the live profile, an id
                assert path.endswith("?unused=1") or live.upper() in path, path  # not canonical
        # every view in time answered 200 took the hot path, and the views before a
        # registration (404, folded once); nothing else did
        assert set(hot_statuses) == {200, 404}, hot_statuses
        assert hot_statuses.count(200) > 50
        status, body, _ = answer(api, f"/v1/customers/{live}?version=1", api.headers("reader"))
        assert status == 200 and b"zoe@example.com" not in body  # masked without pii
        status, body, _ = answer(api, f"/v1/customers/{live}?version=1", api.headers("admin"))
        assert status == 200 and b"zoe@example.com" in body


def test_each_time_travel_counts_once_against_the_rate_limit(
    tmp_path: Path, postgres_url: str
) -> None:
    with running_api(tmp_path, postgres_url, rate_limit="7/minute") as api:
        registered = send(api, "POST", "/v1/customers", {"name": "Ada"})  # as admin
        live = registered.json()["customer_id"]
        contact = {"channel": "email", "direction": "inbound"}
        assert send(api, "POST", f"/v1/customers/{live}/contacts", contact).status_code == 200
        reader = api.headers("reader")
        hot = hot_path(api)
        statuses = [
            api.client.get(f"/v1/customers/{live}?{query}", headers=reader).status_code
            for query in (
                "version=1",
                "as_of=2000-01-01T00:00:00Z",  # no registration by then: 404 from the hot path
                "version=0",  # refused by the route's validation, counted there
                "known_at=2099-01-01T00:00:00Z",
                "version=2",
                "as_of=2099-01-01T00:00:00Z",
                "version=1",
                "version=1",
            )
        ]
        assert statuses == [200, 404, 422, 200, 200, 200, 200, 429], statuses
        assert hot.answered == 6  # the 404 too: the view was folded once, on the hot path


def test_a_moment_past_the_edge_of_utc_is_compared_as_it_is(tmp_path: Path) -> None:
    """The view compares ``as_of`` and ``known_at`` in UTC (:func:`api.http.routes.reads._utc`);
    a moment UTC cannot hold (year 1 before, year 9999 after its offset) still answers."""
    with running_api(tmp_path) as api:
        live = send(api, "POST", "/v1/customers", {"name": "Ada"}).json()["customer_id"]
        reader = api.headers("reader")
        early, late = "0001-01-01T00:30:00%2B01:00", "9999-12-31T23:30:00-01:00"
        answers = {
            query: api.client.get(f"/v1/customers/{live}?{query}", headers=reader).status_code
            for query in (
                f"as_of={early}",
                f"as_of={late}",
                f"known_at={early}",
                f"known_at={late}",
            )
        }
        assert answers == {
            f"as_of={early}": 404,
            f"as_of={late}": 200,
            f"known_at={early}": 404,
            f"known_at={late}": 200,
        }, answers
