"""Reproductions of issue 13's edge defects over HTTP, on SQLite and on real PostgreSQL: text
no backend may store is refused alike on both (PostgreSQL refuses NUL in its read models),
search matches literally, and If-Match follows RFC 9110."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from uuid import uuid4

import pytest

from tests.api_support import Api, send

PROBLEM = "application/problem+json"


def register(api: Api, **body: Any) -> dict[str, Any]:
    response = send(api, "POST", "/v1/customers", {"name": "Ada", **body})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def read(api: Api, path: str, position: int) -> Any:
    return api.client.get(path, headers=api.headers("admin", **{"X-Min-Position": str(position)}))


def assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/validation"
    assert response.json()["field"] == field, response.text


def test_a_nul_byte_is_refused_and_never_loses_a_customer(api: Api) -> None:
    """Issue 13, item 1: answered 201, then PostgreSQL refused the read-model row (404 forever)."""
    refused = send(
        api, "POST", "/v1/customers", {"name": "Nul\u0000Byte", "email": "nul@example.com"}
    )
    assert_refused(refused, "name")
    written = register(api, name="Nul Byte", email="nul@example.com")  # the email is still free
    profile = read(api, f"/v1/customers/{written['customer_id']}", written["position"])
    assert profile.status_code == 200 and profile.json()["name"] == "Nul Byte"


REFUSED = [
    ("NUL", "\u0000"),
    ("unit separator", "\u001f"),
    ("DEL", "\u007f"),
    ("C1 NEL", "\u0085"),
    ("unpaired surrogate", "\ud800"),
    ("noncharacter", "\ufffe"),
    ("bidi override", "\u202e"),
]
KEPT = [
    "李 小龙",
    "مرحبا بالعالم",
    "👩\u200d💻 Ada",
    "Zoë",
    "\U0001f600",
    "\ue000 private",
    "\ufffd",
]


@pytest.mark.parametrize(("what", "char"), REFUSED, ids=[w for w, _ in REFUSED])
def test_text_no_backend_stores_is_refused_in_every_field_alike(
    api: Api, what: str, char: str
) -> None:
    cid = register(api)["customer_id"]
    base = f"/v1/customers/{cid}"
    bad = f"a{char}b"
    for method, path, body, field in [
        ("POST", "/v1/customers", {"name": bad}, "name"),
        ("POST", "/v1/customers", {"name": "A", "source": bad}, "source"),
        ("POST", "/v1/customers", {"name": "A", "attributes": {"city": bad}}, "attributes.city"),
        (
            "POST",
            f"{base}/contacts",
            {"channel": "chat", "direction": "inbound", "summary": bad},
            "summary",
        ),
        ("POST", f"{base}/feedback", {"comment": bad}, "comment"),
        (
            "POST",
            f"{base}/purchases",
            {"order_id": bad, "amount": "1", "currency": "EUR"},
            "order_id",
        ),
        (
            "POST",
            f"{base}/purchases",
            {"order_id": "o", "amount": "1", "currency": "EUR", "items": [{"note": bad}]},
            "items[0].note",
        ),
        ("PUT", f"{base}/consents/profiling", {"granted": True, "source": bad}, "source"),
        ("POST", f"{base}/churn", {"reason": bad}, "reason"),
    ]:
        response = send(api, method, path, body)
        assert response.status_code == 422, (what, path, response.text)
        assert response.json()["field"] in (field, field.split(".")[0]), (what, response.text)
    if char != "\ud800":  # a path cannot carry an unpaired surrogate
        assert_refused(send(api, "PUT", f"{base}/tags/{quote(bad)}"), "tag")
    batch = send(
        api,
        "POST",
        "/v1/commands:batch",
        {
            "commands": [
                {"type": "register", "name": "A", "attributes": {"city": bad}},
                {"type": "tag", "customer_id": cid, "tag": bad},
                {"type": "tag", "customer_id": cid, "tag": "ok", f"x{char}": 1},
                {"type": "tag", "customer_id": cid, "tag": "ok", "idempotency_key": bad},
                {"type": "register", "name": "A", "email": f"{bad}@example.com"},
                {"type": "register", "name": "A", "phone": f"+49 30 {bad}"},
            ]
        },
    )
    assert batch.status_code == 200, batch.text  # the email was hashed before it was checked: 500
    fields = [r["problem"]["field"] for r in batch.json()["results"]]
    assert fields[:2] == ["attributes.city", "tag"]
    assert fields[3:] == ["idempotency_key", "email", "phone"]
    assert all(r["status"] == "rejected" for r in batch.json()["results"])


EDGE_SPACES = ["\x1f", "\x1c", "\x85", "\t", "\u2028", "\u3000"]


@pytest.mark.parametrize("char", EDGE_SPACES, ids=[f"U+{ord(c):04X}" for c in EDGE_SPACES])
def test_what_python_strips_but_the_policy_refuses_is_refused_not_trimmed(
    api: Api, char: str
) -> None:
    """An email of U+001F alone was stored as no email (201): ``str.strip()`` counts U+001C-
    U+001F, U+0085, tabs, line breaks and other spaces as whitespace. Every value a parser
    trims is refused instead, never silently changed; only U+0020 is trimmed."""
    cid = register(api)["customer_id"]
    base = f"/v1/customers/{cid}"
    purchase = {"order_id": f"o-{ord(char)}", "amount": "1.50", "currency": "EUR"}
    for method, path, body, field in [
        ("POST", "/v1/customers", {"name": "A", "email": char}, "email"),
        ("POST", "/v1/customers", {"name": "A", "email": f"a@example.com{char}"}, "email"),
        ("POST", "/v1/customers", {"name": "A", "phone": char}, "phone"),
        ("POST", "/v1/customers", {"name": "A", "phone": f"+49 30 1234567{char}"}, "phone"),
        ("POST", f"{base}/purchases", {**purchase, "currency": f"EUR{char}"}, "currency"),
        ("POST", f"{base}/purchases", {**purchase, "amount": f"1.50{char}"}, "amount"),
        (
            "POST",
            f"{base}/purchases",
            {**purchase, "occurred_at": f"2026-01-02T03:04:05Z{char}"},
            "occurred_at",
        ),
        ("POST", f"{base}/lifecycle", {"stage": f"loyal{char}"}, "stage"),
    ]:
        response = send(api, method, path, body)
        assert response.status_code == 422, (field, repr(char), response.text)
        assert response.json()["field"] == field, (repr(char), response.text)
    for spaced in [" ada@example.com ", "  "]:  # U+0020 is still trimmed; blank is no email
        assert send(api, "POST", "/v1/customers", {"name": "A", "email": spaced}).is_success


def test_text_every_backend_stores_is_kept_exactly(api: Api) -> None:
    for text in KEPT:
        written = register(api, name=text, attributes={"note": f"{text}\r\nline 2"})
        profile = read(api, f"/v1/customers/{written['customer_id']}", written["position"])
        assert profile.status_code == 200, profile.text
        assert profile.json()["name"] == text
        assert profile.json()["attributes"] == {"note": f"{text}\nline 2"}


def test_surrogates_and_odd_keys_never_cause_a_server_error(api: Api) -> None:
    for body in [
        {"name": "\ud800"},
        {"name": "A", "attributes": {"\ud800": 1}},
        {"name": "A", "attributes": {"x": {"\ud800": [1]}}},
        {"name": "A", "\ud800": 1},
    ]:
        response = send(api, "POST", "/v1/customers", body)
        assert response.status_code == 422, response.text
    batch = send(
        api, "POST", "/v1/commands:batch", {"commands": [{"type": "register", "\udfff": 1}]}
    )
    assert batch.status_code == 200 and batch.json()["results"][0]["status"] == "rejected"


def test_headers_and_query_parameters_are_held_to_the_text_policy(api: Api) -> None:
    cid = register(api)["customer_id"]
    admin = [(k.encode(), v.encode()) for k, v in api.headers("admin").items()]
    for value in [b"a\x01b", "café".encode(), b"a\tb"]:  # UTF-8 bytes arrive as latin-1
        correlated = api.client.get("/v1/customers", headers=[*admin, (b"x-correlation-id", value)])
        assert_refused(correlated, "X-Correlation-Id")
        keyed = api.client.put(
            f"/v1/customers/{cid}/tags/vip", headers=[*admin, (b"idempotency-key", value)]
        )
        assert_refused(keyed, "Idempotency-Key")
    for query in ["q=%00", "q=a%0Ab", "tag=%E2%80%AE", "actor=x%1F"]:
        response = api.client.get(f"/v1/customers?{query}", headers=api.headers("admin"))
        assert response.status_code == 422, (query, response.text)  # was a 500 on PostgreSQL
    fine = send(api, "GET", "/v1/customers?q=%C3%A9", **{"X-Correlation-Id": "req-42"})
    assert fine.status_code == 200 and fine.headers["x-correlation-id"] == "req-42"


def test_search_matches_q_literally(api: Api) -> None:
    """Issue 13, item 9: ``q=mary_jones`` found nothing, ``q=%`` listed everyone."""
    written = [
        register(api, name=name, email=email)
        for name, email in [
            ("Mary Jones", "mary_jones@example.com"),
            ("Mary X", "maryxjones@example.com"),
            ("100% Cotton", "cotton@example.com"),
            ("Back\\slash", "back@example.com"),
        ]
    ]
    last = written[-1]["position"]

    def names(q: str) -> list[str]:
        response = read(api, f"/v1/customers?q={quote(q)}", last)
        assert response.status_code == 200, response.text
        return sorted(item["name"] for item in response.json()["items"])

    assert names("mary_jones") == ["Mary Jones"]
    assert names("mary_") == ["Mary Jones"]
    assert names("%") == []
    assert names("_") == []
    assert names("100%") == ["100% Cotton"]
    assert names("back\\") == ["Back\\slash"]
    assert names("MARY") == ["Mary Jones", "Mary X"]


def test_tags_keep_their_meaning_over_http(api: Api) -> None:
    cid = register(api)["customer_id"]
    base = f"/v1/customers/{cid}/tags"
    last = 0
    for tag in ["C++", "C#", "日本"]:
        response = send(api, "PUT", f"{base}/{quote(tag, safe='')}")
        assert response.status_code == 200, response.text
        last = response.json()["position"]
    assert read(api, f"/v1/customers/{cid}", last).json()["tags"] == ["c++", "c#", "日本"]
    found = read(api, f"/v1/customers?tag={quote('C++')}", last).json()["items"]
    assert [item["customer_id"] for item in found] == [cid]
    assert_refused(send(api, "PUT", f"{base}/VIP!"), "tag")


def test_if_match_follows_rfc_9110(api: Api) -> None:
    """Issue 13, item 11a: ``If-Match: *`` answered 422."""
    cid = register(api)["customer_id"]
    patch = f"/v1/customers/{cid}"

    names = iter(range(100))

    def write(if_match: str, path: str = patch, method: str = "PATCH") -> Any:
        body = {"name": f"Name {next(names)}"} if method == "PATCH" else None  # each a change
        return send(api, method, path, body, **{"If-Match": if_match})

    star = write("*")
    assert star.status_code == 200 and star.headers["etag"] == '"2"'
    assert write('"1", "2"').status_code == 200  # a list: any version it names
    assert write(' , "7" ,"3",').status_code == 200  # empty list elements are allowed
    assert write('"3"').status_code == 412  # now at 4
    for weak in ['W/"4"', 'W/"4", W/"3"']:  # strong comparison: weak tags never match
        failed = write(weak)
        assert (
            failed.status_code == 412 and failed.json()["type"] == "/problems/precondition-failed"
        )
    assert write('"04"').status_code == 412 and write('"abc"').status_code == 412
    assert_refused(write("4"), "If-Match")  # not an entity tag
    assert_refused(write('"4'), "If-Match")
    missing = f"/v1/customers/{uuid4()}"
    for if_match in ["*", '"1"', '"1", "2"']:
        gone = write(if_match, missing)
        assert gone.status_code == 412 and gone.json()["type"] == "/problems/precondition-failed"
    for method, path in [("PUT", f"{patch}/tags/vip"), ("DELETE", f"{patch}/tags/vip")]:
        assert write("*", path, method).status_code == 200
        assert write('"1"', path, method).status_code == 412
    assert send(api, "PUT", f"{patch}/tags/x", **{"If-Match": "*"}).status_code == 200
    assert write("*", f"/v1/customers/{uuid4()}/tags/x", "PUT").status_code == 412
    assert send(api, "PUT", f"/v1/customers/{uuid4()}/tags/x").status_code == 404


def test_segment_names_and_rules_are_held_to_the_text_policy(api: Api) -> None:
    rule = {"field": "tags", "op": "contains", "value": "vip"}
    for body, field in [
        ({"name": "VIP\u0000", "rule": rule}, "name"),
        ({"name": "VIP\nlist", "rule": rule}, "name"),
        ({"name": "VIP", "rule": {"field": "name", "op": "eq", "value": "A\u0000"}}, "rule.value"),
        (
            {"name": "VIP", "rule": {"field": "attributes.n", "op": "eq", "value": 2**70}},
            "rule.value",
        ),
        (
            {"name": "VIP", "rule": {"field": "tags", "op": "contains", "value": "VIP!"}},
            "rule.value",
        ),
    ]:
        assert_refused(send(api, "PUT", "/v1/segments/vip", body), field)
    made = send(api, "PUT", "/v1/segments/vip", {"name": "VIP 👩\u200d💻", "rule": rule})
    assert made.status_code == 200 and made.json()["name"] == "VIP 👩\u200d💻"


def test_if_match_on_merge_names_the_target_only(api: Api) -> None:
    cid = register(api)["customer_id"]
    merge = send(
        api,
        "POST",
        f"/v1/customers/{cid}/merge",
        {"duplicate_id": str(uuid4())},
        **{"If-Match": "*"},
    )
    assert merge.status_code == 404 and merge.json()["type"] == "/problems/not-found"
