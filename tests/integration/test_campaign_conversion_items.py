"""A campaign's conversion may name a line item's ``category`` or ``sku`` (issue 19 item 1,
issue 20: the purchase items' category is used): only purchases with such an item convert,
both sides compared in their canonical form."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import Api, running_api
from tests.integration.test_campaigns_http import create, customer


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as running:
        yield running


ITEMS: dict[str, list[dict[str, Any]]] = {
    "tea": [{"sku": "oolong-1", "category": "Tea", "quantity": 1}, {"note": "gift wrap"}],
    "coffee": [{"sku": "arabica-1", "category": "Coffee"}],
    "no-items": [],
}


@pytest.mark.parametrize(
    ("conversion", "converting"),
    [
        ({"category": "  Tea "}, {"tea"}),
        ({"category": "Coffee"}, {"coffee"}),
        ({"sku": "oolong-1"}, {"tea"}),
        ({"category": "Tea", "sku": "arabica-1"}, set()),
        ({}, {"tea", "coffee", "no-items"}),
    ],
)
def test_conversion_by_category_or_sku(
    api: Api, conversion: dict[str, Any], converting: set[str]
) -> None:
    admin, marketer, writer = api.headers("admin"), api.headers("marketer"), api.headers("writer")
    for _ in range(10):
        customer(api, consent=True)
    rule = {"field": "tags", "op": "contains", "value": "vip"}
    api.client.put("/v1/segments/vips", json={"name": "VIPs", "rule": rule}, headers=admin)
    made = create(api, control_fraction="0.2", conversion={"window_days": 14, **conversion})
    campaign = made["campaign_id"]
    launched = api.client.post(f"/v1/campaigns/{campaign}/launch", headers=marketer)
    assert launched.is_success, launched.text
    # the audience is a read model: read it at the position the launch reached
    after_launch = api.headers("marketer", **{"X-Min-Position": str(launched.json()["position"])})
    treated = api.client.get(
        f"/v1/campaigns/{campaign}/audience?group=treatment", headers=after_launch
    )
    buyers = [m["customer_id"] for m in treated.json()["items"]][: len(ITEMS)]
    assert len(buyers) == len(ITEMS)
    position = 0
    for buyer, (kind, items) in zip(buyers, ITEMS.items(), strict=True):
        bought = api.client.post(
            f"/v1/customers/{buyer}/purchases",
            json={"order_id": kind, "amount": "30", "currency": "EUR", "items": items},
            headers=writer,
        )
        assert bought.is_success, bought.text
        position = max(position, bought.json()["position"])
    reader = api.headers("reader", **{"X-Min-Position": str(position)})
    results = api.client.get(f"/v1/campaigns/{campaign}/results", headers=reader).json()
    assert results["groups"]["treatment"]["conversions"] == len(converting)
