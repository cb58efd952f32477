"""The reported merge flows over HTTP, in-process, on SQLite and on a real PostgreSQL
(issue 13, items 4, 5, 11b and 2): each test is the report's reproduction, then its siblings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.event_base import MAX_EVENT_BYTES
from domain.values import ConsentPurpose
from infra.api_keys import KeyStore, Role
from tests.api_support import Api, running_api


class TestMergeFlows:
    @pytest.fixture
    def api(self, tmp_path: Path, database_url: str) -> Iterator[Api]:
        with running_api(tmp_path, database_url) as running:
            keys = KeyStore(tmp_path / "keys.json")
            running.tokens["auditor+pii"] = keys.create(
                "dpo", [Role.AUDITOR, Role.READER], pii=True
            )[1]
            yield running

    # ------------------------------------------------------------------------- helpers

    def call(self, api: Api, method: str, path: str, who: str = "admin", **kw: Any) -> Any:
        return api.client.request(method, f"/v1{path}", headers=api.headers(who), **kw)

    def ok(self, api: Api, method: str, path: str, who: str = "admin", **kw: Any) -> Any:
        response = self.call(api, method, path, who, **kw)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def register(self, api: Api, **body: Any) -> str:
        customer: str = self.ok(api, "POST", "/customers", json=body)["customer_id"]
        return customer

    def read(self, api: Api, path: str, position: int, who: str = "auditor+pii") -> Any:
        return api.client.get(
            f"/v1{path}", headers=api.headers(who, **{"X-Min-Position": str(position)})
        )

    # ---------------------------------------------------------------- item 4: consent

    @pytest.mark.parametrize("purpose", list(ConsentPurpose))
    def test_merging_does_not_revive_an_opt_out(self, api: Api, purpose: str) -> None:
        survivor = self.register(api, name="Sam")  # no email
        duplicate = self.register(api, name="Sam Dup", email="sam@example.com")
        consent = f"/customers/{{}}/consents/{purpose}"
        self.ok(api, "PUT", consent.format(survivor), json={"granted": True})
        self.ok(api, "PUT", consent.format(duplicate), json={"granted": True})
        self.ok(
            api,
            "PUT",
            consent.format(duplicate),
            json={"granted": False, "source": "unsubscribe-link"},
        )
        self.ok(api, "PUT", f"/customers/{survivor}/tags/newsletter")
        rule = {"field": "tags", "op": "contains", "value": "newsletter"}
        self.ok(
            api, "PUT", "/segments/news", json={"name": "News", "rule": rule, "purpose": purpose}
        )
        merged = self.ok(
            api, "POST", f"/customers/{survivor}/merge", json={"duplicate_id": duplicate}
        )

        audience = self.read(api, "/segments/news/members", merged["position"]).json()
        assert audience["items"] == []
        shown = self.read(api, f"/customers/{survivor}", merged["position"]).json()
        assert shown["email"] == "sam@example.com" and shown["consents"][purpose] is False
        decisions = self.read(
            api, f"/customers/{survivor}/consents/history", merged["position"]
        ).json()["items"]
        assert (decisions[-1]["granted"], decisions[-1]["source"]) == (False, f"merge:{duplicate}")

    # -------------------------------------------------------------- item 5: erasure

    def test_erasing_a_merged_duplicate_names_the_survivor_and_erasing_it_reaches_every_copy(
        self, api: Api
    ) -> None:
        survivor = self.register(api, name="Sam")
        duplicate = self.register(api, name="Dee Dup", email="dee@example.com", phone="+4930901820")
        self.ok(api, "POST", f"/customers/{survivor}/merge", json={"duplicate_id": duplicate})

        refused = self.call(api, "DELETE", f"/customers/{duplicate}")
        assert refused.status_code == 410 and refused.headers["content-type"].startswith(
            "application/problem+json"
        )
        assert refused.json()["type"] == "/problems/gone-merged"
        assert refused.json()["survivor_id"] == survivor

        erased = self.ok(api, "DELETE", f"/customers/{survivor}")
        position = erased["position"]
        for customer in (survivor, duplicate):
            gone = self.read(api, f"/customers/{customer}", position, who="reader+pii")
            assert gone.status_code == 410 and gone.json()["type"] == "/problems/gone-erased"
        exposed = []
        for customer in (survivor, duplicate):
            history = self.read(api, f"/customers/{customer}/history", position)
            exposed.append(history.text)
            for version in range(1, 4):
                exposed.append(self.read(api, f"/customers/{customer}?version={version}", 0).text)
        exposed.append(self.read(api, "/audit/export", position).text)
        assert all("dee@example.com" not in text and "+4930901820" not in text for text in exposed)
        assert all("Dee Dup" not in text for text in exposed)
        unmerge = self.call(
            api, "POST", f"/customers/{survivor}/unmerge", json={"duplicate_id": duplicate}
        )
        assert unmerge.json()["type"] == "/problems/gone-erased"

    def test_a_wrong_merge_is_undone_before_the_duplicate_alone_is_erased(self, api: Api) -> None:
        survivor = self.register(api, name="Sam", email="sam@example.com")
        duplicate = self.register(api, name="Dee", phone="+4930901820")
        self.ok(api, "POST", f"/customers/{survivor}/merge", json={"duplicate_id": duplicate})
        self.ok(api, "POST", f"/customers/{survivor}/unmerge", json={"duplicate_id": duplicate})
        erased = self.ok(api, "DELETE", f"/customers/{duplicate}")
        kept = self.read(api, f"/customers/{survivor}", erased["position"], who="reader+pii")
        assert (kept.status_code, kept.json()["phone"]) == (200, None)
        # nor do the copies the merge left in the survivor's history read any more
        history = self.read(api, f"/customers/{survivor}/history", erased["position"])
        merged_then = self.read(api, f"/customers/{survivor}?version=2", 0)
        assert history.status_code == merged_then.status_code == 200
        assert merged_then.json()["phone"] is None
        assert all("+4930901820" not in r.text for r in (history, merged_then))

    # ------------------------------------------------------- item 11b: final survivor

    def test_every_410_of_a_merge_chain_names_the_final_survivor(self, api: Api) -> None:
        a, b, c = (self.register(api, name=n) for n in ("A", "B", "C"))
        self.ok(api, "POST", f"/customers/{b}/merge", json={"duplicate_id": a})
        position = self.ok(api, "POST", f"/customers/{c}/merge", json={"duplicate_id": b})[
            "position"
        ]
        for customer in (a, b):
            read = self.read(api, f"/customers/{customer}", position, who="reader")
            assert (read.status_code, read.json()["survivor_id"]) == (410, c)
            for method, path, body in (
                ("PUT", f"/customers/{customer}/tags/vip", None),
                ("DELETE", f"/customers/{customer}", None),
                ("POST", f"/customers/{customer}/merge", {"duplicate_id": c}),
                ("POST", f"/customers/{c}/merge", {"duplicate_id": customer}),
            ):
                write = self.call(api, method, path, json=body)
                assert (write.status_code, write.json()["survivor_id"]) == (410, c), path
        batch = self.ok(
            api,
            "POST",
            "/commands:batch",
            json={"commands": [{"type": "tag", "customer_id": a, "tag": "vip"}]},
        )
        assert batch["results"][0]["problem"]["survivor_id"] == c

    # -------------------------------------------------------- item 2: bounded events

    def test_a_big_merge_is_recorded_in_parts_and_an_oversized_event_is_refused(
        self, api: Api
    ) -> None:
        survivor = self.register(api, name="Sam")
        duplicate = self.register(api, name="Dee")
        purchases = [
            {
                "type": "purchase",
                "customer_id": duplicate,
                "order_id": f"{i:05d}" + "o" * 95,
                "amount": "12.50",
                "currency": "EUR",
            }
            for i in range(1200)
        ]
        for start in (0, 600):
            results = self.ok(
                api, "POST", "/commands:batch", json={"commands": purchases[start : start + 600]}
            )["results"]
            assert {r["status"] for r in results} == {"accepted"}
        merged = self.ok(
            api, "POST", f"/customers/{survivor}/merge", json={"duplicate_id": duplicate}
        )
        shown = self.read(api, f"/customers/{survivor}", merged["position"]).json()
        assert shown["purchases"]["count"] == 1200 and shown["purchases"]["total"] == {
            "EUR": "15000.00"
        }
        history = self.read(api, f"/customers/{survivor}/history", merged["position"]).json()
        parts = [
            (row["data"]["part"], row["data"]["parts"])
            for row in history["items"]
            if row["type"] == "customer.duplicate_absorbed"
        ]
        assert parts == [(1, 3), (2, 3), (3, 3)]

        # Every field is bounded at the edge; the widest legal payload left is 100 attributes
        # of 1,000 four-byte characters, which sealing grows past the bound.
        wide = {f"line_{i}": "\U0001f600" * 1000 for i in range(100)}
        refused = api.client.patch(
            f"/v1/customers/{survivor}",
            json={"attributes": wide},
            headers={**api.headers("admin"), "If-Match": f'"{shown["version"]}"'},
        )
        assert refused.status_code == 422 and refused.json()["type"] == "/problems/event-too-large"
        assert refused.json()["limit"] == MAX_EVENT_BYTES
        after = self.read(api, f"/customers/{survivor}", 0).json()
        assert after["version"] == shown["version"]  # nothing of it recorded
