"""Issue 14, items 1 and 2 over HTTP, on SQLite and on real PostgreSQL: a customer base from
1997 brought in with back-dated registrations and external ids, asked for its 1998 states;
every surface addressing customers by external id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.api_support import Api, send

PROBLEM = "application/problem+json"


def batch(api: Api, *commands: dict[str, Any]) -> list[dict[str, Any]]:
    response = send(api, "POST", "/v1/commands:batch", {"commands": list(commands)})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def get(api: Api, path: str, position: int = 0, who: str = "reader+pii") -> Any:
    return api.client.get(path, headers=api.headers(who, **{"X-Min-Position": str(position)}))


def test_an_import_of_1997_data_can_ask_for_1998_states(api: Api) -> None:
    """Done when: time travel to a date between a back-dated registration and the first
    purchase shows the customer; 1998 states of 1997 data; history shows both times."""
    imported_at = datetime.now(UTC)
    ada, bob = batch(
        api,
        {"type": "register", "name": "Ada", "customer_ref": {"system": "shop", "id": "00042"}}
        | {"occurred_at": "1997-01-15T10:00:00Z"},
        {"type": "register", "name": "Bob", "external_ids": {"shop": "00043"}}
        | {"occurred_at": "1997-02-01T10:00:00Z"},
    )
    shop42 = {"system": "shop", "id": "00042"}
    results = batch(
        api,
        *(
            {"type": "purchase", "customer_ref": shop42, "order_id": order, "amount": "10.00"}
            | {"currency": "USD", "occurred_at": when}
            for order, when in (("A1", "1997-03-02T12:00:00Z"), ("A2", "1998-02-10T12:00:00Z"))
        ),
        {"type": "purchase", "customer_ref": {"system": "SHOP", "id": "00043"}}
        | {"order_id": "B1", "amount": "5.00", "currency": "USD"}
        | {"occurred_at": "1997-04-01T09:00:00-05:00"},
        {"type": "tag", "customer_ref": shop42, "tag": "vip"}
        | {"occurred_at": "1997-01-20T00:00:00Z"},
        {"type": "churn", "customer_ref": shop42, "occurred_at": "1998-09-01T00:00:00Z"},
    )
    assert [r["status"] for r in results] == ["accepted"] * 5
    assert {r["customer_id"] for r in results} == {ada["customer_id"], bob["customer_id"]}
    last = max(r["position"] for r in results)
    path = f"/v1/customers/{ada['customer_id']}"

    def as_of(moment: str, **query: str) -> Any:
        params = "&".join(f"{k}={v}" for k, v in {"as_of": moment, **query}.items())
        return get(api, f"{path}?{params}", last)

    between = as_of("1997-02-01T00:00:00Z")  # after registering, before the first purchase
    assert between.status_code == 200, between.text
    assert (between.json()["purchases"]["count"], between.json()["tags"]) == (0, ["vip"])
    assert between.json()["registered_at"] == "1997-01-15T10:00:00+00:00"
    assert as_of("1997-01-15T09:59:59Z").status_code == 404  # not registered yet
    mid_1998 = as_of("1998-07-01T00:00:00Z").json()
    assert mid_1998["purchases"]["count"] == 2 and mid_1998["status"] == "active"
    assert mid_1998["purchases"]["total"] == {"USD": "20.00"}
    assert as_of("1998-10-01T00:00:00Z").json()["status"] == "churned"
    # bitemporal: what the store knew before the import is nothing at all
    before_import = imported_at.isoformat().replace("+00:00", "Z")
    assert get(api, f"{path}?known_at={before_import}").status_code == 404
    assert as_of("1998-07-01T00:00:00Z", known_at=before_import).status_code == 404
    live = get(api, path, last).json()
    assert live["purchases"]["first_at"] == "1997-03-02T12:00:00+00:00"
    assert live["registered_at"] == "1997-01-15T10:00:00+00:00"

    lifecycle = get(api, "/v1/analytics/lifecycle", last).json()
    months = {(t["month"], t["from"], t["to"]) for t in lifecycle["transitions"]}
    assert {("1997-01", None, "prospect"), ("1997-03", "prospect", "new")} <= months
    assert ("1998-09", "new", "churned") in months
    churn = get(api, "/v1/analytics/churn?period=year&from=1998-01-01&to=1999-01-01", last)
    assert churn.json()["periods"] == [
        {
            "period": "1998-01-01",
            "end": "1999-01-01",
            "active_at_start": 2,
            "churned": 1,
            "rate": 0.5,
        }
    ]
    history = get(api, f"{path}/history", last, who="auditor").json()["items"]
    first = history[0]
    assert first["occurred_at"].startswith("1997-01-15") and first["recorded_at"] > "2020"


def test_customers_are_found_and_addressed_by_external_id(api: Api) -> None:
    created = send(
        api,
        "POST",
        "/v1/customers",
        {"name": "Ada", "external_ids": {"Shop": " 00042 ", "legacy": "A/17"}},
    )
    assert created.status_code == 201, created.text
    ada = created.json()
    assert ada["existing"] is False
    again = send(api, "POST", "/v1/customers", {"name": "Twin", "external_ids": {"shop": "00042"}})
    assert again.status_code == 200 and again.json() | {"position": 0} == ada | {
        "existing": True,
        "position": 0,
    }
    found = get(api, "/v1/customers/by-external/SHOP/00042", ada["position"])
    assert found.status_code == 200, found.text
    assert found.json()["external_ids"] == {"legacy": "A/17", "shop": "00042"}
    assert found.json()["name"] == "Ada"
    assert found.headers["content-location"] == f"/v1/customers/{ada['customer_id']}"
    assert get(api, "/v1/customers/by-external/legacy/A/17", ada["position"]).status_code == 200
    masked = get(api, "/v1/customers/by-external/shop/00042", ada["position"], who="reader")
    assert masked.json()["external_ids"] == {"legacy": "A***", "shop": "0***"}
    missing = get(api, "/v1/customers/by-external/shop/42")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert missing.json()["customer_ref"] == {"system": "shop", "id": "42"}
    bad = get(api, "/v1/customers/by-external/1shop/42")
    assert bad.status_code == 422 and bad.json()["field"] == "customer_ref.system"
    listed = get(api, "/v1/customers?external_system=Shop&external_id=00042", ada["position"])
    assert [c["customer_id"] for c in listed.json()["items"]] == [ada["customer_id"]]

    bob = send(api, "POST", "/v1/customers", {"name": "Bob", "external_ids": {"shop": "7"}})
    bob_id = bob.json()["customer_id"]
    taken = send(
        api,
        "PATCH",
        f"/v1/customers/{bob_id}",
        {"external_ids": {"shop": "00042"}},
        **{"If-Match": "*"},
    )
    assert taken.status_code == 409 and taken.json()["type"] == "/problems/external-id-taken"
    assert taken.json()["existing_customer_id"] == ada["customer_id"]
    conflict = send(
        api, "POST", "/v1/customers", {"name": "X", "external_ids": {"shop": "7", "legacy": "A/17"}}
    )
    assert (
        conflict.status_code == 409 and conflict.json()["type"] == "/problems/external-id-conflict"
    )

    merged = send(
        api, "POST", f"/v1/customers/{bob_id}/merge", {"duplicate_id": ada["customer_id"]}
    )
    assert merged.status_code == 200, merged.text
    survivor = get(api, "/v1/customers/by-external/shop/00042", merged.json()["position"])
    assert survivor.status_code == 200 and survivor.json()["customer_id"] == bob_id
    assert survivor.headers["content-location"] == f"/v1/customers/{bob_id}"
    (tagged,) = batch(
        api, {"type": "tag", "customer_ref": {"system": "legacy", "id": "A/17"}, "tag": "x"}
    )
    assert tagged["customer_id"] == bob_id
    (unknown,) = batch(
        api, {"type": "tag", "customer_ref": {"system": "shop", "id": "9"}, "tag": "x"}
    )
    assert unknown["status"] == "rejected" and unknown["problem"]["code"] == "not-found"
    assert unknown["problem"]["customer_ref"] == {"system": "shop", "id": "9"}

    erased = send(api, "DELETE", f"/v1/customers/{bob_id}")
    assert erased.status_code == 200, erased.text
    for system, external_id in (("shop", "00042"), ("shop", "7"), ("legacy", "A/17")):
        gone = get(
            api, f"/v1/customers/by-external/{system}/{external_id}", erased.json()["position"]
        )
        assert gone.status_code == 404, (system, gone.text)
    reused = send(api, "POST", "/v1/customers", {"name": "New", "external_ids": {"shop": "7"}})
    assert reused.status_code == 201 and reused.json()["customer_id"] != bob_id
