"""Issue 13 item 7, over HTTP: a segment's history is decided from the log, live and rebuilt."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consumers.rebuild import rebuild
from projections.segments import SegmentsProjector
from tests.api_support import Api, running_api

VIP = {"field": "tags", "op": "contains", "value": "vip"}


def members(api: Api, position: int, **params: Any) -> list[dict[str, Any]]:
    headers = api.headers("reader", **{"X-Min-Position": str(position)})
    response = api.client.get("/v1/segments/vips/members", headers=headers, params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_segment_defined_after_the_fact_starts_at_its_definition_live_and_rebuilt(
    tmp_path: Path,
) -> None:
    with running_api(tmp_path) as api:
        writer, admin = api.headers("writer"), api.headers("admin")
        customer = api.client.post("/v1/customers", json={"name": "Vi"}, headers=writer).json()
        cid = customer["customer_id"]
        assert api.client.put(f"/v1/customers/{cid}/tags/vip", headers=writer).status_code == 200
        time.sleep(0.01)
        before_definition = datetime.now(UTC)
        time.sleep(0.01)
        put = api.client.put("/v1/segments/vips", json={"name": "VIPs", "rule": VIP}, headers=admin)
        assert put.status_code == 200, put.text
        defined = put.json()
        assert defined["version"] == 1 and put.headers["etag"] == '"1"'
        position = defined["position"]
        live = members(api, position)
        assert live == [{"customer_id": cid, "since": defined["created_at"], "position": position}]
        assert members(api, position, as_of=before_definition.isoformat()) == []

        services = api.app.state.services
        verified = rebuild(
            services.feed, services.read_store, SegmentsProjector(), verify_only=True
        )
        assert verified.differences == []
        rebuild(services.feed, services.read_store, SegmentsProjector())
        assert members(api, position) == live
        assert members(api, position, as_of=before_definition.isoformat()) == []
        listed = api.client.get("/v1/segments", headers=api.headers("reader")).json()["items"]
        assert listed == [{k: v for k, v in defined.items() if k != "position"}]
