"""``GET /v1/analytics/rfm`` and ``GET /v1/customers/{id}/rfm`` on SQLite and PostgreSQL.

Purchases go in through the batch route; every expected value comes from
:func:`tests.rfm_support.independent` over the test's own list of purchases.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from projections import rfm_model
from tests.api_support import Api, running_api
from tests.rfm_support import Purchase, heavy_ties, independent

END = datetime(2024, 6, 30, 18, tzinfo=UTC)
USD_FROM = END - timedelta(days=10)  # the USD purchases all come after this instant
GROUP_NAMES = [
    "champions",
    "loyal",
    "potential_loyalist",
    "new",
    "needs_attention",
    "at_risk",
    "hibernating",
    "lost",
]


@dataclass
class Base:
    api: Api
    eur: list[Purchase]  # of live customers
    usd: list[Purchase]
    position: int
    merged: str
    survivor: str
    erased: str
    idle: str  # registered, never bought

    def get(self, path: str, **params: Any) -> Any:
        headers = self.api.headers("reader", **{"X-Min-Position": str(self.position)})
        return self.api.client.get(path, params=params, headers=headers)


@pytest.fixture
def base(tmp_path: Path, database_url: str) -> Iterator[Base]:
    with running_api(tmp_path, database_url) as api:
        yield _load(api)


def _batch(api: Api, commands: list[dict[str, Any]]) -> None:
    for start in range(0, len(commands), 500):
        answer = api.client.post(
            "/v1/commands:batch",
            json={"commands": commands[start : start + 500]},
            headers=api.headers("writer"),
        )
        assert answer.status_code == 200, answer.text
        assert {r["status"] for r in answer.json()["results"]} == {"accepted"}, answer.text


def _write(api: Api, method: str, path: str, body: Any = None) -> dict[str, Any]:
    answer = api.client.request(method, path, json=body, headers=api.headers("admin"))
    assert answer.status_code in (200, 201), answer.text
    result: dict[str, Any] = answer.json()
    return result


def _load(api: Api) -> Base:
    eur = heavy_ties(150, END, seed=3)
    rng = random.Random(4)
    people = sorted({c for c, _, _ in eur})
    usd = [(c, USD_FROM + timedelta(hours=rng.randrange(200)), Decimal("5")) for c in people[:9]]
    erased, merged, survivor = people[-1], people[-2], people[-3]
    since = min(at for _, at, _ in eur + usd).isoformat()  # no purchase before registration
    commands = [
        {"type": "register", "customer_id": c, "name": f"P {c[:4]}", "occurred_at": since}
        for c in people
    ]
    for n, (customer, at, amount) in enumerate(eur + usd):
        currency = "USD" if n >= len(eur) else "EUR"
        commands.append(
            {
                "type": "purchase",
                "customer_id": customer,
                "order_id": f"o{n}",
                "amount": str(amount),
                "currency": currency,
                "occurred_at": at.isoformat(),
            }
        )
    _batch(api, commands)
    idle = _write(api, "POST", "/v1/customers", {"name": "Idle"})["customer_id"]
    _write(api, "POST", f"/v1/customers/{survivor}/merge", {"duplicate_id": merged})
    position = _write(api, "DELETE", f"/v1/customers/{erased}")["position"]
    moved = [(survivor, at, a) if c == merged else (c, at, a) for c, at, a in eur]
    live = [p for p in moved if p[0] != erased]
    live_usd = [p for p in usd if p[0] not in (erased, merged)]
    return Base(api, live, live_usd, position, merged, survivor, erased, idle)


def _all_pages(base: Base, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every item, following next_cursor; and the documents of the pages."""
    items, documents, cursor = [], [], None
    for _ in range(1000):
        answer = base.get("/v1/analytics/rfm", **params, **({"cursor": cursor} if cursor else {}))
        assert answer.status_code == 200, answer.text
        documents.append(answer.json())
        items += documents[-1]["items"]
        cursor = documents[-1]["next_cursor"]
        if cursor is None:
            return items, documents
    raise AssertionError("paging did not end")


def test_pages_hold_every_live_customer_once_with_the_independent_scores(base: Base) -> None:
    expected = independent(base.eur, END)
    items, pages = _all_pages(base, currency="EUR", at=END.isoformat(), limit=7)
    ids = [item["customer_id"] for item in items]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert {item.pop("customer_id"): item for item in items} == expected
    assert base.merged not in ids and base.erased not in ids and base.survivor in ids
    assert all(len(page["items"]) == 7 for page in pages[:-1]) and len(pages) > 10
    first = pages[0]
    assert first["observation_end"] == END.isoformat() and first["currency"] == "EUR"
    assert first["population"] == len(expected)
    assert first["currencies"] == {"EUR": len(expected), "USD": len({c for c, _, _ in base.usd})}
    assert first["cuts"]["f"][0] == 0  # more than a fifth are one-time buyers


def test_filters_list_exactly_the_customers_with_those_scores(base: Base) -> None:
    everyone, _ = _all_pages(base, currency="EUR", at=END.isoformat(), limit=500)
    wanted: list[dict[str, Any]] = [{"group": g} for g in GROUP_NAMES]
    wanted += [{k: s} for k in "rfm" for s in range(1, 6)]
    wanted += [{"r": 4, "f": 1}, {"group": "at_risk", "m": 1}]
    seen_groups = set()
    for filters in wanted:
        items, _ = _all_pages(base, currency="EUR", at=END.isoformat(), limit=9, **filters)
        chosen = [i for i in everyone if all(i[k] == v for k, v in filters.items())]
        assert items == chosen, filters
        seen_groups |= {i["group"] for i in items}
    assert len(seen_groups) >= 5


def test_the_currency_is_named_or_inferred_never_an_empty_guess(base: Base) -> None:
    several = base.get("/v1/analytics/rfm", at=END.isoformat())
    assert several.status_code == 422 and several.json()["field"] == "currency"
    assert set(several.json()["currencies"]) == {"EUR", "USD"}
    unknown = base.get("/v1/analytics/rfm", at=END.isoformat(), currency="GBP")
    assert unknown.status_code == 422 and "EUR, USD" in unknown.json()["detail"]
    before_usd = base.get("/v1/analytics/rfm", at=(USD_FROM - timedelta(days=1)).isoformat())
    assert before_usd.status_code == 200 and before_usd.json()["currency"] == "EUR"
    usd = base.get("/v1/analytics/rfm", at=END.isoformat(), currency="USD").json()
    assert {i["customer_id"]: i["f"] for i in usd["items"]} == {
        c: row["f"] for c, row in independent(base.usd, END).items()
    }
    empty = base.get("/v1/analytics/rfm", at="2000-01-01T00:00:00Z")
    assert empty.status_code == 200
    assert (empty.json()["currency"], empty.json()["items"], empty.json()["population"]) == (
        None,
        [],
        0,
    )


def test_an_observation_end_in_the_past_sees_the_purchases_up_to_it(base: Base) -> None:
    mid = END - timedelta(days=120)
    items, _ = _all_pages(base, currency="EUR", at=mid.isoformat(), limit=50)
    assert {item.pop("customer_id"): item for item in items} == independent(base.eur, mid)


def test_the_cursor_keeps_the_observation_end_and_currency(base: Base) -> None:
    first = base.get("/v1/analytics/rfm", currency="EUR", limit=5).json()  # at: now
    cursor = first["next_cursor"]
    later = base.get("/v1/analytics/rfm", cursor=cursor, limit=5).json()
    assert later["observation_end"] == first["observation_end"]
    assert (
        later["currency"] == "EUR"
        and later["items"][0]["customer_id"] > (first["items"][-1]["customer_id"])
    )
    for params in ({"at": END.isoformat()}, {"currency": "USD"}, {"cursor": "bm9wZQ"}):
        refused = base.get("/v1/analytics/rfm", **{"cursor": cursor, **params})
        assert refused.status_code == 422 and refused.json()["field"] == "cursor", params
    bad: list[dict[str, Any]] = [{"group": "vip"}, {"r": 6}, {"m": 0}, {"limit": 0}]
    for params in [*bad, {"at": "2024-01-01"}, {"at": "1800-01-01T00:00:00Z"}]:
        refused = base.get("/v1/analytics/rfm", currency="EUR", **params)
        assert refused.status_code == 422, params


def test_one_customer_answers_like_their_row_on_the_page(base: Base) -> None:
    expected = independent(base.eur, END)
    survivor = base.get(f"/v1/customers/{base.survivor}/rfm", at=END.isoformat(), currency="EUR")
    assert survivor.status_code == 200
    body = survivor.json()
    assert body["population"] == len(expected) and body["currency"] == "EUR"
    assert {k: body[k] for k in expected[base.survivor]} == expected[base.survivor]
    one_currency = next(c for c in expected if c not in {p[0] for p in base.usd})
    inferred = base.get(f"/v1/customers/{one_currency}/rfm", at=END.isoformat()).json()
    assert inferred["currency"] == "EUR" and inferred["group"] == expected[one_currency]["group"]
    both = base.usd[0][0]
    assert base.get(f"/v1/customers/{both}/rfm").json()["field"] == "currency"
    idle = base.get(f"/v1/customers/{base.idle}/rfm").json()
    assert (idle["currency"], idle["r"], idle["group"], idle["population"]) == (None, None, None, 0)
    assert base.get(f"/v1/customers/{base.erased}/rfm").status_code == 410
    gone = base.get(f"/v1/customers/{base.merged}/rfm")
    assert gone.status_code == 410 and gone.json()["survivor_id"] == base.survivor
    assert base.get(f"/v1/customers/{UUID(int=7)}/rfm").status_code == 404


def test_the_kept_value_counts_give_the_cuts_of_all_rows(base: Base) -> None:
    assert base.get("/v1/analytics/lifecycle").status_code == 200  # caught up
    with base.api.app.state.services.read_store.transaction() as tx:
        counted = rfm_model.populations(tx, END.date())  # from analytics_rfm_values
        read = rfm_model.read_as_of(tx, END.date(), ["EUR", "USD"])  # from every row
        later = rfm_model.populations(tx, END.date() + timedelta(days=400))
    assert counted == read and set(counted) == {"EUR", "USD"}
    assert {c: p.size for c, p in later.items()} == {c: p.size for c, p in counted.items()}
