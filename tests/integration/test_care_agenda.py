"""The care agenda over HTTP in-process (``GET /v1/care/agenda``): each reason for the customers
it concerns, on the business day asked for, under the care policy version in force that day;
items clear when a contact is recorded; owner and reason filters; pages that add up to the
whole agenda; greetings only with a marketing consent; merged and erased customers never on
it; bad parameters answered 422 naming the field; and the read model equal to a rebuild."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumers.rebuild import rebuild
from consumers.store_feed import StoreFeed
from domain.values import utc_text
from projections.care import CareProjector
from tests.api_support import Api, running_api

DAY = timedelta(days=1)
START = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - 200 * DAY
POLICY = {
    "follow_up": {"default_days": 60, "by_tier": {"gold": 20}},
    "occasions": {"upcoming_days": 7},
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as running:
        yield running


def at(day: int) -> str:
    return (START + day * DAY).isoformat()


def on(day: int) -> str:
    return (START + day * DAY).date().isoformat()


LAST: dict[int, int] = {}  # id(api) -> the position of its last customer write


def write(api: Api, method: str, path: str, body: dict[str, Any], who: str = "writer") -> Any:
    answer = api.client.request(method, path, json=body, headers=api.headers(who))
    assert answer.status_code in (200, 201), answer.text
    if "customer_id" in answer.json():
        LAST[id(api)] = max(LAST.get(id(api), 0), answer.json()["position"] or 0)
    return answer.json()


def register(api: Api, name: str, **attributes: str) -> str:
    body = {"name": name, "attributes": attributes, "occurred_at": at(0)}
    cid: str = write(api, "POST", "/v1/customers", body)["customer_id"]
    return cid


def contact(api: Api, cid: str, day: int, kind: str = "care") -> None:
    body = {"channel": "phone", "direction": "outbound", "kind": kind, "occurred_at": at(day)}
    write(api, "POST", f"/v1/customers/{cid}/contacts", body)


def agenda(api: Api, day: int, who: str = "reader", **params: Any) -> Any:
    answer = api.client.get(
        "/v1/care/agenda",
        params={"date": on(day), **params},
        headers=api.headers(who, **{"X-Min-Position": str(LAST.get(id(api), 0))}),
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def reasons(api: Api, day: int, **params: Any) -> set[tuple[str, str]]:
    return {(i["customer_id"], i["reason"]) for i in agenda(api, day, **params)["items"]}


def test_each_reason_comes_due_and_clears_with_a_contact(api: Api) -> None:
    write(api, "PUT", "/v1/policies/care", {"document": POLICY, "effective_at": at(0)}, "admin")
    birthday = (START + 103 * DAY).strftime("--%m-%d")
    ada = register(api, "Ada", owner="ana", birthday=birthday)
    write(api, "PUT", f"/v1/customers/{ada}/consents/email_marketing", {"granted": True})
    ben = register(api, "Ben", owner="bo")
    cy = register(api, "Cy", owner="ana")
    for cid in (ada, ben, cy):
        contact(api, cid, 50)
    contact(api, ben, 90, kind="complaint")
    write(api, "POST", f"/v1/customers/{cy}/lifecycle", {"stage": "at_risk", "occurred_at": at(95)})

    assert reasons(api, 95) == {(ben, "complaint"), (cy, "at_risk")}
    assert reasons(api, 96) == {(ada, "birthday"), (ben, "complaint"), (cy, "at_risk")}
    assert reasons(api, 110) == {
        (ada, "follow_up"),  # 60 days after day 50
        (cy, "follow_up"),
        (ben, "complaint"),
        (cy, "at_risk"),
    }
    assert reasons(api, 110, owner="ana", reason="follow_up") == {
        (ada, "follow_up"),
        (cy, "follow_up"),
    }
    assert reasons(api, 110, owner="bo") == {(ben, "complaint")}

    contact(api, ada, 97)  # the greeting
    contact(api, ben, 98)  # the complaint answered
    contact(api, cy, 99)  # the at-risk customer reached
    assert reasons(api, 100) == set()
    assert reasons(api, 158) == {(ada, "follow_up"), (ben, "follow_up")}  # day 97 + 60, 98 + 60

    item = agenda(api, 158, owner="bo")["items"][0]
    assert item == {
        "customer_id": ben,
        "reason": "follow_up",
        "due_at": utc_text(START + 158 * DAY),
        "owner": "bo",
        "lifecycle_stage": "prospect",
        "tier": None,
        "detail": {"interval_days": 60},
    }


def test_the_policy_version_in_force_on_the_day_decides(api: Api) -> None:
    cid = register(api, "Dee")
    assert agenda(api, 89)["policy_version"] is None  # the default policy: 90 days
    assert reasons(api, 89) == set() and reasons(api, 90) == {(cid, "follow_up")}
    write(api, "PUT", "/v1/policies/care", {"document": POLICY, "effective_at": at(80)}, "admin")
    assert reasons(api, 70) == set()  # a change never reaches back before its effective time
    assert agenda(api, 80)["policy_version"] == 1 and reasons(api, 80) == {(cid, "follow_up")}


def test_greetings_need_a_marketing_consent_and_merged_or_erased_are_never_listed(
    api: Api,
) -> None:
    birthday = (START + 30 * DAY).strftime("%Y-%m-%d")
    eve = register(api, "Eve", birthday=birthday)
    fay = register(api, "Fay", birthday=birthday)
    gus = register(api, "Gus", birthday=birthday)
    for cid in (eve, fay, gus):
        write(api, "PUT", f"/v1/customers/{cid}/consents/sms_marketing", {"granted": True})
    write(api, "PUT", f"/v1/customers/{eve}/consents/sms_marketing", {"granted": False})
    assert reasons(api, 28) == {(fay, "birthday"), (gus, "birthday")}
    write(api, "POST", f"/v1/customers/{gus}/merge", {"duplicate_id": fay}, "admin")
    assert reasons(api, 28) == {(gus, "birthday")}
    write(api, "DELETE", f"/v1/customers/{gus}", {}, "admin")
    assert reasons(api, 28) == set()
    assert reasons(api, 95) == {(eve, "follow_up")}  # the default policy: 90 days


def test_pages_add_up_to_the_whole_agenda(api: Api) -> None:
    people = [register(api, f"P{i}", owner="ana") for i in range(7)]
    contact(api, people[0], 1, kind="complaint")
    whole = agenda(api, 100)["items"]
    assert len(whole) == 8
    seen, cursor = [], None
    while True:
        page = agenda(api, 100, limit=3, **({"cursor": cursor} if cursor else {}))
        seen += page["items"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == whole


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"date": "2026-02-30"}, "query.date"),
        ({"date": "0001-01-01"}, "date"),
        ({"date": "9999-12-31"}, "date"),
        ({"reason": "gossip"}, "query.reason"),
        ({"limit": 0}, "query.limit"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
        ({"owner": ""}, "query.owner"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(
    api: Api, params: dict[str, Any], field: str
) -> None:
    answer = api.client.get("/v1/care/agenda", params=params, headers=api.headers("reader"))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["field"] == field


def test_the_care_read_model_equals_a_rebuild(api: Api) -> None:
    test_each_reason_comes_due_and_clears_with_a_contact(api)
    services = api.app.state.services
    agenda(api, 1)  # caught up
    result = rebuild(
        StoreFeed(services.store), services.read_store, CareProjector(), verify_only=True
    )
    assert result.events > 0 and result.differences == []
    assert date.fromisoformat(on(0)) < date.fromisoformat(on(1))


def members(api: Api, segment: str) -> set[str]:
    answer = api.client.get(
        f"/v1/segments/{segment}/members",
        headers=api.headers("reader", **{"X-Min-Position": str(LAST.get(id(api), 0))}),
    )
    assert answer.status_code == 200, answer.text
    return {item["customer_id"] for item in answer.json()["items"]}


def test_care_reasons_are_segment_fields_under_the_policy_in_force(api: Api) -> None:
    now = datetime.now(UTC)
    for segment, reason in (("complainers", "complaint"), ("overdue", "follow_up")):
        rule = {"field": "care.reasons", "op": "contains", "value": reason}
        write(api, "PUT", f"/v1/segments/{segment}", {"name": segment, "rule": rule}, "admin")
    body = {"name": "Kim", "occurred_at": (now - 100 * DAY).isoformat()}
    kim: str = write(api, "POST", "/v1/customers", body)["customer_id"]
    assert members(api, "overdue") == {kim}  # 100 days without contact; the default is 90
    assert members(api, "complainers") == set()
    complaint = {"channel": "email", "direction": "inbound", "kind": "complaint"}
    write(api, "POST", f"/v1/customers/{kim}/contacts", complaint)
    assert members(api, "complainers") == {kim} and members(api, "overdue") == set()
    answer = {"channel": "phone", "direction": "outbound", "kind": "care"}
    write(api, "POST", f"/v1/customers/{kim}/contacts", answer)
    assert members(api, "complainers") == set()

    ann: str = write(api, "POST", "/v1/customers", body | {"name": "Ann"})["customer_id"]
    assert members(api, "overdue") == {ann}
    document = {"document": {"follow_up": {"default_days": 200}}, "effective_at": now.isoformat()}
    defined = write(api, "PUT", "/v1/policies/care", document, "admin")
    assert defined["version"] == 1
    LAST[id(api)] = _head(api)  # the policy's position: segments follow it
    assert members(api, "overdue") == set()  # decided again under the new version
    bad = {"name": "x", "rule": {"field": "care.reasons", "op": "contains", "value": "gossip"}}
    refused = api.client.put("/v1/segments/bad", json=bad, headers=api.headers("admin"))
    assert refused.status_code == 422 and refused.json()["field"] == "rule.value"


def _head(api: Api) -> int:
    head: int = api.app.state.services.store.head()
    return head
