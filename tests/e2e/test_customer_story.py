"""The whole customer story over HTTP against ``clientele serve`` started as a process."""

from __future__ import annotations

import time

from tests.e2e.conftest import Server, Story


def test_the_whole_customer_story(server: Server) -> None:
    story = Story(server)
    ada = story.write(
        "POST",
        "/v1/customers",
        expect=201,
        json={
            "name": " Ada  Lovelace ",
            "email": "ADA@Example.com",
            "phone": "030 901820",
            "attributes": {"city": "London"},
        },
    )
    cid = ada["customer_id"]
    assert ada["version"] == 1

    updated = story.write(
        "PATCH",
        f"/v1/customers/{cid}",
        json={"attributes": {"city": "Paris"}},
        headers={"If-Match": '"1"'},
    )
    assert updated["version"] == 2
    story.write(
        "POST",
        f"/v1/customers/{cid}/contacts",
        json={
            "channel": "phone",
            "direction": "outbound",
            "kind": "care",
            "subject": "Welcome call",
        },
    )
    story.write("PUT", f"/v1/customers/{cid}/tags/VIP Gold")
    story.write(
        "POST",
        f"/v1/customers/{cid}/purchases",
        json={
            "order_id": "A-1",
            "amount": "120.50",
            "currency": "EUR",
            "items": [{"sku": "tea", "quantity": 3}],
        },
    )
    story.write(
        "POST", f"/v1/customers/{cid}/feedback", json={"nps": 9, "csat": 5, "comment": "lovely"}
    )
    consent = story.write(
        "PUT",
        f"/v1/customers/{cid}/consents/email_marketing",
        json={"granted": True, "source": "web form"},
    )
    before_churn = story.read(f"/v1/customers/{cid}")
    assert before_churn["name"] == "Ada Lovelace" and before_churn["email"] == "ada@example.com"
    assert before_churn["phone"] == "+4930901820" and before_churn["attributes"] == {
        "city": "Paris"
    }
    assert before_churn["tags"] == ["vip-gold"] and before_churn["consents"] == {
        "email_marketing": True
    }
    assert before_churn["purchases"]["count"] == 1 and before_churn["purchases"]["total"] == {
        "EUR": "120.50"
    }
    assert before_churn["contacts"]["count"] == 1 and before_churn["feedback"] == {
        "nps": 9,
        "csat": 5,
    }
    assert (
        before_churn["lifecycle_stage"] == "new" and before_churn["version"] == consent["version"]
    )

    segment = story.write(  # an event in the store: reads wait for its position
        "PUT",
        "/v1/segments/vip-mail",
        who="admin",
        json={
            "name": "VIPs who accept email",
            "purpose": "email_marketing",
            "rule": {"field": "tags", "op": "contains", "value": "VIP Gold"},
        },
    )
    assert segment["version"] == 1 and segment["position"] > consent["position"]
    assert [m["customer_id"] for m in story.read("/v1/segments/vip-mail/members")["items"]] == [cid]
    assert [c["customer_id"] for c in story.read("/v1/customers", segment="vip-mail")["items"]] == [
        cid
    ]
    entered_at = story.read("/v1/segments/vip-mail/members")["items"][0]["since"]
    story.write("PUT", f"/v1/customers/{cid}/consents/email_marketing", json={"granted": False})
    assert story.read("/v1/segments/vip-mail/members")["items"] == []  # consent gating
    then = story.read("/v1/segments/vip-mail/members", as_of=entered_at)["items"]
    assert [m["customer_id"] for m in then] == [cid]  # membership as of T, from the history
    story.write("PUT", f"/v1/customers/{cid}/consents/email_marketing", json={"granted": True})
    consents = story.read(f"/v1/customers/{cid}/consents/history", who="auditor")["items"]
    assert [(c["purpose"], c["granted"]) for c in consents] == [
        ("email_marketing", True),
        ("email_marketing", False),
        ("email_marketing", True),
    ]
    assert consents[0]["source"] == "web form" and consents[1]["actor"].startswith("key:")

    story.write("POST", f"/v1/customers/{cid}/churn", json={"reason": "moved away"})
    assert story.read(f"/v1/customers/{cid}")["status"] == "churned"
    story.write("POST", f"/v1/customers/{cid}/reactivate", json={})
    assert story.read(f"/v1/customers/{cid}")["status"] == "active"

    twin = story.write(
        "POST", "/v1/customers", expect=201, json={"name": "Ada L.", "phone": "+4930901821"}
    )
    story.write("PUT", f"/v1/customers/{twin['customer_id']}/tags/newsletter")
    story.write(
        "POST",
        f"/v1/customers/{twin['customer_id']}/purchases",
        json={"order_id": "B-7", "amount": "10", "currency": "EUR"},
    )
    story.write(
        "POST",
        f"/v1/customers/{cid}/merge",
        who="admin",
        json={"duplicate_id": twin["customer_id"]},
    )
    merged = story.read(f"/v1/customers/{cid}")
    assert merged["tags"] == ["vip-gold", "newsletter"] and merged["purchases"]["count"] == 2
    gone = story.read(f"/v1/customers/{twin['customer_id']}", expect=410)
    assert gone["survivor_id"] == cid and gone["type"] == "/problems/gone-merged"

    story.write(
        "POST",
        f"/v1/customers/{cid}/merge",
        who="writer",
        expect=403,
        json={"duplicate_id": twin["customer_id"]},
    )
    taken = story.write(
        "POST", "/v1/customers", expect=409, json={"name": "Imposter", "email": "ada@example.com"}
    )
    assert taken["existing_customer_id"] == cid

    search = story.read("/v1/customers", q="ada", limit=10)
    assert [item["customer_id"] for item in search["items"]] == [cid]
    as_v2 = story.read(f"/v1/customers/{cid}", version=2)
    assert (
        as_v2["attributes"] == {"city": "Paris"} and as_v2["tags"] == [] and as_v2["version"] == 2
    )

    erased = story.write("DELETE", f"/v1/customers/{cid}", who="admin")
    assert story.read(f"/v1/customers/{cid}", expect=410)["type"] == "/problems/gone-erased"
    after = story.read(f"/v1/customers/{cid}", version=erased["version"])
    assert after["name"] is None and after["email"] is None and after["status"] == "erased"
    assert after["purchases"]["total"] == {"EUR": "130.50"}  # facts without PII survive
    reused = story.write(
        "POST", "/v1/customers", expect=201, json={"name": "New Ada", "email": "ada@example.com"}
    )
    assert reused["customer_id"] != cid

    history = story.read(f"/v1/customers/{cid}/history", who="auditor")["items"]
    types = [h["type"] for h in history]
    assert types[:3] == ["customer.registered", "customer.profile_updated", "customer.contacted"]
    assert history[1]["diff"] == {}  # as a rebuild after the erasure reads it: no personal field
    assert "customer.erased" in types and all(h["actor"].startswith("key:") for h in history)
    by_admin = story.read(
        "/v1/audit/events", who="auditor", actor="key:admin", type="customer.erased"
    )["items"]
    assert [e["customer_id"] for e in by_admin] == [cid, twin["customer_id"]]  # merged into her
    exported = story.http.get(
        "/v1/audit/export", headers=server.headers("auditor")
    ).text.splitlines()
    assert len(exported) >= len(history) and all(line.startswith("{") for line in exported)
    stages = story.read("/v1/analytics/lifecycle")
    assert sum(stages["stages"].values()) >= 1 and any(
        t["to"] == "churned" for t in stages["transitions"]
    )
    satisfaction = story.read("/v1/analytics/satisfaction")
    assert (
        satisfaction["nps"] == {"score": 100.0, "responses": 1}
        and satisfaction["csat"]["score"] == 100.0
    )
    assert "periods" in story.read("/v1/analytics/churn", period="quarter")
    # everyone who bought is erased or merged by now: a named currency nobody live bought in
    # is a 422 listing the currencies there are, never an empty page
    no_buyer = story.read("/v1/analytics/rfm", currency="EUR", expect=422)
    assert no_buyer["field"] == "currency" and no_buyer["currencies"] == {}
    audit = story.read("/v1/audit/verify", who="auditor")
    assert audit["ok"] and audit["problems"] == [] and audit["events_checked"] > 20
    assert story.read("/v1/audit/verify", who="reader", expect=403)["type"] == "/problems/forbidden"

    deadline = time.monotonic() + 30
    while (status := story.read("/projections")) and time.monotonic() < deadline:
        if all(p["lag"] == 0 for p in status["projections"]):
            break
        time.sleep(0.2)
    assert status["mode"] == server.mode and all(p["lag"] == 0 for p in status["projections"])
    assert status.get("relay", {"lag": 0})["lag"] == 0
