"""Duplicate detection through the API, on SQLite and PostgreSQL: a registration reports its
probable duplicates, a scan lists pairs with evidence, dismissals and merges are decisions
recorded as events, merged and erased customers never appear, and the duplicates read model
(dismissals included) equals a rebuild."""

from __future__ import annotations

from typing import Any

from consumers.rebuild import rebuild_all
from projections import duplicate_candidates
from projections.registry import by_name
from tests.api_support import Api
from tests.duplicates_support import assert_reported_as_robert


class Client:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.position = 0

    def write(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        answer = self.api.client.request(
            method, path, json=body, headers=self.api.headers("admin", **headers)
        )
        assert answer.status_code in (200, 201), answer.text
        result = answer.json()
        self.position = max(self.position, result.get("position") or 0)
        return result

    def read(self, path: str, status: int = 200, **params: Any) -> Any:
        headers = self.api.headers("reader", **{"X-Min-Position": str(self.position)})
        answer = self.api.client.get(path, params=params, headers=headers)
        assert answer.status_code == status, answer.text
        return answer.json()

    def scan(self, *, full: bool = False) -> duplicate_candidates.ScanResult:
        self.read("/v1/duplicates")  # the read model has every write so far
        return duplicate_candidates.scan(self.api.app.state.services.read_store, full=full)

    def listed(self, **params: Any) -> dict[str, dict[str, Any]]:
        return {i["pair_id"]: i for i in self.read("/v1/duplicates", **params)["items"]}


def register(client: Client, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = client.write("POST", "/v1/customers", body)
    client.read("/v1/duplicates")  # the next registration is checked against this one
    return result


def pair(a: str, b: str) -> str:
    return "~".join(sorted((a, b)))


def test_duplicates_from_registration_to_decision(api: Api) -> None:
    client = Client(api)
    home = {"address": "12 High Street", "city": "London"}
    robert = register(
        client,
        name="Robert Smith",
        email="rob.smith@gmail.com",
        phone="+44 20 7946 0958",
        attributes=home,
    )
    # A household member: same last name, landline and address, another first name.
    alice = register(
        client,
        name="Alice Smith",
        email="alice@example.com",
        phone="+442079460958",
        attributes=home,
    )
    assert alice["possible_duplicates"] == []
    bob = register(
        client,
        name="Bob Smith",
        email="robsmith+shop@googlemail.com",
        phone="0044 20 7946 0958",
        attributes={"address": "12 high st.", "city": "LONDON"},
    )
    assert_reported_as_robert(bob, robert["customer_id"])
    ann = register(client, name="Ann Lee", email="ann.lee@example.com", external_ids={"crm": "7"})
    lee = register(client, name="Lee Ann", email="a.lee@example.org", external_ids={"crm": "7x"})
    dupe = register(client, name="Zoë Müller", email="zoe@example.com", phone="+4915112345678")
    zoe = register(
        client, name="ZOE MULLER", email="zoe.mueller@example.net", phone="+49 151 12345678"
    )
    assert [d["customer_id"] for d in zoe["possible_duplicates"]] == [dupe["customer_id"]]

    batch = client.write(
        "POST",
        "/v1/commands:batch",
        {
            "commands": [
                {"type": "register", "name": "Robert Smith", "phone": "+44 20 7946 0958"},
                {"type": "tag", "customer_id": robert["customer_id"], "tag": "vip"},
            ]
        },
    )["results"]
    # a batch registration is checked too (most probable first: same name, then nickname)
    assert [d["customer_id"] for d in batch[0]["possible_duplicates"]] == [
        robert["customer_id"],
        bob["customer_id"],
    ]
    assert batch[1]["possible_duplicates"] == []
    client.write("DELETE", f"/v1/customers/{batch[0]['customer_id']}")

    first = client.scan()
    assert (first.full, first.customers) == (True, 7)
    listed = client.listed()
    robert_bob = pair(robert["customer_id"], bob["customer_id"])
    zoes = pair(dupe["customer_id"], zoe["customer_id"])
    assert set(listed) == {robert_bob, zoes}  # not the household, not the crm-id conflict
    assert pair(ann["customer_id"], lee["customer_id"]) not in listed
    assert listed[robert_bob]["evidence"]["name"]["weight"] > 0
    assert listed[robert_bob]["probability"] >= listed[zoes]["probability"]

    page = client.read("/v1/duplicates", limit=1)
    rest = client.read("/v1/duplicates", limit=1, cursor=page["next_cursor"])
    assert [page["items"][0]["pair_id"], rest["items"][0]["pair_id"]] == [robert_bob, zoes]
    assert rest["next_cursor"] is None
    assert client.read("/v1/duplicates", 422, cursor="nope")["field"] == "cursor"
    assert client.read("/v1/duplicates", 422, min_score=1.5)["status"] == 422

    # Dismissed: gone, and a full scan does not bring it back while the records stay the same.
    dismissed = client.write("POST", f"/v1/duplicates/{zoes}/dismiss")
    assert dismissed["dismissed"] is True
    assert zoes not in client.listed()
    again = client.write("POST", f"/v1/duplicates/{robert_bob}/dismiss")
    client.scan(full=True)
    assert client.listed() == {}
    # ... until one of the records changes (an incremental scan compares it again).
    version = client.read(f"/v1/customers/{zoe['customer_id']}")["version"]
    client.write(
        "PATCH",
        f"/v1/customers/{zoe['customer_id']}",
        {"attributes": {"city": "Berlin"}},
        **{"If-Match": f'"{version}"'},
    )
    incremental = client.scan()
    assert (incremental.full, incremental.compared) == (False, 1)
    assert set(client.listed()) == {zoes}
    assert again["position"] > dismissed["position"]

    # Merged through the pair: the duplicate is gone from every pair.
    merged = client.write(
        "POST", f"/v1/duplicates/{zoes}/merge", {"survivor_id": dupe["customer_id"]}
    )
    assert merged["customer_id"] == dupe["customer_id"]
    assert client.listed() == {}
    missing = api.client.post(f"/v1/duplicates/{zoes}/merge", headers=api.headers("admin"))
    assert missing.status_code == 404
    bad = api.client.post("/v1/duplicates/not-a-pair/dismiss", headers=api.headers("admin"))
    assert (bad.status_code, bad.json()["field"]) == (422, "pair")
    reader = api.client.post(f"/v1/duplicates/{robert_bob}/dismiss", headers=api.headers("reader"))
    assert reader.status_code == 403

    # Erased: its pairs never appear, even before the next scan.
    client.write(
        "PATCH", f"/v1/customers/{bob['customer_id']}", {"name": "Bob Smyth"}, **{"If-Match": '"1"'}
    )
    client.scan()
    assert set(client.listed()) == {robert_bob}
    client.write("DELETE", f"/v1/customers/{bob['customer_id']}")
    assert client.listed() == {}
    assert client.scan().candidates == 0

    names = {p["name"] for p in client.read("/projections")["projections"]}
    assert "duplicates" in names
    services = api.app.state.services
    (result,) = rebuild_all(
        services.feed, services.read_store, [by_name("duplicates")], verify_only=True
    )
    assert result.differences == []
