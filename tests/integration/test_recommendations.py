"""``GET /v1/customers/{id}/recommendations`` equals a co-occurrence computation done here, from
the test's own ledger of what each customer holds, on SQLite and PostgreSQL; live equals a
rebuild. Refunds, merges (and an unmerge), an erasure and profiling consent all shape it. The
segment field ``recommendations.top3`` holds exactly the customers whose independent top 3
names the item, changes at refreshes when co-purchases change, and equals a rebuild."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import permutations
from typing import Any
from uuid import UUID, uuid4

from commands.service import Context
from consumers.rebuild import rebuild
from projections import segment_queries
from projections.recommendations import RecommendationsProjector
from projections.segments import SegmentsProjector
from tests.api_support import Api

SKUS = [f"sku-{n:02d}" for n in range(14)]
SOLO = ["solo-0", "solo-1", "solo-2"]  # bought by one customer each: no co-purchase evidence
KINDS = ("tea", "cups", "snacks")
CATEGORY: dict[str, str | None] = {
    **{sku: KINDS[n % 3] if n % 5 else None for n, sku in enumerate(SKUS)},
    **dict(zip(SOLO, KINDS, strict=True)),
}
CTX = Context(actor="recommendations-test")


@dataclass
class Person:
    id: str
    consent: bool | None = None  # profiling: granted, withdrawn, never said
    live: bool = True
    orders: dict[str, set[str]] = field(default_factory=dict)


def _post(api: Api, path: str, body: Any, role: str = "admin") -> dict[str, Any]:
    answer = api.client.post(path, json=body, headers=api.headers(role))
    assert answer.status_code in (200, 201), answer.text
    result: dict[str, Any] = answer.json()
    return result


def _batch(api: Api, commands: list[dict[str, Any]]) -> int:
    results = _post(api, "/v1/commands:batch", {"commands": commands}, "writer")["results"]
    assert {r["status"] for r in results} == {"accepted"}, results
    return max(int(r["position"]) for r in results)


def _load(api: Api, rng: random.Random) -> tuple[dict[str, Person], int]:
    # ids from the seeded generator: which customers get refunds, merges and the erasure (the
    # first ids in sorted order) is then the same on every run, and so is the number checked
    drawn = (str(UUID(int=rng.getrandbits(128), version=4)) for _ in range(40))
    people = {c: Person(c) for c in drawn}
    commands: list[dict[str, Any]] = [
        {"type": "register", "customer_id": c, "name": f"P {c[:4]}"} for c in people
    ]
    for person in people.values():
        if rng.random() < 0.8:
            person.consent = True
            commands.append(
                {
                    "type": "consent",
                    "customer_id": person.id,
                    "purpose": "profiling",
                    "granted": True,
                }
            )
        popular = rng.sample(SKUS[:6], 2)  # a few items most people buy, so pairs repeat
        for n in range(rng.randrange(0, 4)):
            skus = rng.sample(popular + rng.sample(SKUS, 3), rng.randrange(1, 4))
            order = f"o-{person.id[:8]}-{n}"
            items: list[dict[str, Any]] = [
                {"sku": s, "category": CATEGORY[s], "quantity": 1, "unit_price": "2.50"}
                for s in skus
            ]
            items.append({"note": "no sku: not an item to recommend"})
            person.orders[order] = set(skus)
            commands.append(
                {
                    "type": "purchase",
                    "customer_id": person.id,
                    "order_id": order,
                    "amount": "10.00",
                    "currency": "EUR",
                    "items": items,
                }
            )
    _batch(api, commands)
    ids = sorted(people)
    later: list[dict[str, Any]] = []
    for person in (people[c] for c in ids[:6]):  # refunds
        for order in sorted(person.orders)[:1]:
            del person.orders[order]
            later.append({"type": "refund", "customer_id": person.id, "order_id": order})
    for person in (people[c] for c in ids[6:9]):  # change of mind
        person.consent = False
        later.append(
            {"type": "consent", "customer_id": person.id, "purpose": "profiling", "granted": False}
        )
    _batch(api, later)
    _merge(api, people[ids[10]], people[ids[11]])
    kept, given_back = people[ids[12]], people[ids[13]]
    _merge(api, kept, given_back)
    _post(api, f"/v1/customers/{kept.id}/unmerge", {"duplicate_id": given_back.id})
    kept.orders = {o: s for o, s in kept.orders.items() if o not in given_back.orders}
    given_back.live = True
    erased = people[ids[14]]
    answer = api.client.delete(f"/v1/customers/{erased.id}", headers=api.headers("admin"))
    assert answer.status_code == 200, answer.text
    erased.live, erased.orders = False, {}
    solo: list[dict[str, Any]] = []
    for sku in SOLO:  # the category fallback's customers
        person = Person(str(UUID(int=rng.getrandbits(128), version=4)), True)
        person.orders["solo"] = {sku}
        people[person.id] = person
        item = {"sku": sku, "category": f" {CATEGORY[sku]} "}  # stored canonical
        solo += [
            {"type": "register", "customer_id": person.id, "name": f"S {sku}"},
            {"type": "consent", "customer_id": person.id, "purpose": "profiling", "granted": True},
            {"type": "purchase", "customer_id": person.id, "order_id": "solo", "amount": "1"}
            | {"currency": "EUR", "items": [item]},
        ]
    return people, _batch(api, solo)


def _merge(api: Api, survivor: Person, duplicate: Person) -> None:
    _post(api, f"/v1/customers/{survivor.id}/merge", {"duplicate_id": duplicate.id})
    survivor.orders |= {o: s for o, s in duplicate.orders.items() if o not in survivor.orders}
    if duplicate.consent is False and survivor.consent is not False:
        survivor.consent = False  # a merge carries the duplicate's withdrawals over
    duplicate.live = False


def independent(people: dict[str, Person], customer: str, limit: int) -> list[dict[str, Any]]:
    """Cosine item-to-item recommendations, computed from the ledger alone."""
    baskets = [
        set().union(*p.orders.values()) if p.orders else set()
        for p in people.values()
        if p.live and p.consent
    ]
    n: Counter[str] = Counter(s for b in baskets for s in b)
    both: Counter[tuple[str, str]] = Counter(pair for b in baskets for pair in permutations(b, 2))
    owned = set().union(*people[customer].orders.values())
    scored = []
    for j in sorted(set(n) - owned):
        behind = [
            (i, both[i, j], both[i, j] / math.sqrt(n[i] * n[j]))
            for i in sorted(owned)
            if both[i, j]
        ]
        if behind:
            top = sorted(behind, key=lambda e: (-e[2], e[0]))[:3]
            evidence = [{"because": i, "together": c, "cosine": round(v, 6)} for i, c, v in top]
            scored.append((math.fsum(v for _, _, v in behind), j, evidence))
    if not scored:  # the category fallback: the share of the category's buyers who bought j
        for j in sorted(set(n) - owned):
            c = CATEGORY[j]
            if c is not None and c in {CATEGORY[i] for i in owned}:
                buyers = sum(1 for b in baskets if c in {CATEGORY[i] for i in b})
                evidence = [{"category": c, "customers": n[j], "share": round(n[j] / buyers, 6)}]
                scored.append((n[j] / buyers, j, evidence))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [{"sku": j, "score": round(v, 6), "evidence": e} for v, j, e in scored[:limit]]


def test_recommendations_equal_an_independent_co_occurrence_and_a_rebuild(api: Api) -> None:
    people, position = _load(api, random.Random(20))
    reader = api.headers("reader", **{"X-Min-Position": str(position)})
    contributors = sum(1 for p in people.values() if p.live and p.consent and p.orders)
    checked = 0
    answers = {}
    bases: dict[str, str | None] = {}
    for person in people.values():
        got = api.client.get(f"/v1/customers/{person.id}/recommendations?limit=5", headers=reader)
        if not person.live:
            assert got.status_code == 410, got.text
            continue
        assert got.status_code == 200, got.text
        body = answers[person.id] = got.json()
        assert body["model"] == {"measure": "cosine", "customers": contributors}
        if not person.consent:
            assert (body["personalised"], body["reason"], body["items"]) == (
                False,
                "no-profiling-consent",
                [],
            )
            continue
        expected = independent(people, person.id, 5)
        assert body["items"] == expected, person.id
        fallback = bool(expected) and "category" in expected[0]["evidence"][0]
        bases[person.id] = body["basis"]
        assert body["basis"] == (
            None if not expected else "category" if fallback else "co-purchase"
        )
        assert body["owned"] == sorted(set().union(*person.orders.values()))
        assert not {i["sku"] for i in body["items"]} & set(body["owned"])
        checked += bool(expected)
    consenting = sum(1 for p in people.values() if p.live and p.consent)
    assert checked > consenting // 2  # most answers had items to compare, not only empty lists
    assert {bases[p.id] for p in people.values() if SOLO[0] in set().union(*p.orders.values())} == {
        "category"
    }
    listed = {p["name"] for p in api.client.get("/projections").json()["projections"]}
    assert {"recommend", "value", "duplicates"} <= listed  # issue 20 item 4
    services = api.app.state.services
    projector = RecommendationsProjector()
    assert (
        rebuild(services.feed, services.read_store, projector, verify_only=True).differences == []
    )
    rebuild(services.feed, services.read_store, projector)
    for customer, before in answers.items():
        again = api.client.get(f"/v1/customers/{customer}/recommendations?limit=5", headers=reader)
        assert again.json() == before


def test_the_limit_is_checked(api: Api) -> None:
    customer = _post(api, "/v1/customers", {"name": "Ada"}, "writer")["customer_id"]
    for limit in ("0", "101", "x"):
        got = api.client.get(
            f"/v1/customers/{customer}/recommendations?limit={limit}",
            headers=api.headers("reader"),
        )
        assert got.status_code == 422, got.text
    unknown = api.client.get(
        f"/v1/customers/{uuid4()}/recommendations", headers=api.headers("reader")
    )
    assert unknown.status_code == 404


def _buy_more(api: Api, people: dict[str, Person], rng: random.Random) -> int:
    """A second wave of orders from live customers: co-purchases that move some top 3s."""
    commands: list[dict[str, Any]] = []
    buyers = sorted(c for c, p in people.items() if p.live)
    for n, customer in enumerate(rng.sample(buyers, 12)):
        skus = rng.sample(SKUS[6:], 3)
        people[customer].orders[f"w-{n}"] = set(skus)
        commands.append(
            {
                "type": "purchase",
                "customer_id": customer,
                "order_id": f"w-{n}",
                "amount": "5.00",
                "currency": "EUR",
                "items": [{"sku": s, "category": CATEGORY[s]} for s in skus],
            }
        )
    return _batch(api, commands)


def _top3_holders(people: dict[str, Person]) -> dict[str, set[str]]:
    """For every sku, the live customers with profiling consent whose independent top 3
    names it."""
    holders: dict[str, set[str]] = {sku: set() for sku in SKUS + SOLO}
    for person in people.values():
        if person.live and person.consent and person.orders:
            for item in independent(people, person.id, 3):
                holders[item["sku"]].add(person.id)
    return holders


def test_top3_segment_field_follows_the_independent_computation(api: Api) -> None:
    people, _ = _load(api, random.Random(20))
    services = api.app.state.services

    def members(sku: str, position: int) -> set[str]:
        got = api.client.get(
            f"/v1/segments/top3-{sku}/members?limit=1000",
            headers=api.headers("reader", **{"X-Min-Position": str(position)}),
        )
        assert got.status_code == 200, got.text
        return {m["customer_id"] for m in got.json()["items"]}

    position = 0
    for sku in SKUS + SOLO:  # one segment per item; ranked and decided at its definition
        rule = {"field": "recommendations.top3", "op": "contains", "value": f" {sku} "}
        position = max(position, _put(api, f"top3-{sku}", {"name": sku, "rule": rule}))
    before = _top3_holders(people)
    assert sum(map(len, before.values())) > 20  # most consenting buyers have a top 3
    for sku in SKUS + SOLO:
        assert members(sku, position) == before[sku], sku
    # consistent with the customer's own answer
    reader = api.headers("reader", **{"X-Min-Position": str(position)})
    for customer in set().union(*before.values()):
        got = api.client.get(f"/v1/customers/{customer}/recommendations?limit=3", headers=reader)
        top = {i["sku"] for i in got.json()["items"]}
        assert top == {sku for sku in SKUS + SOLO if customer in before[sku]}

    # new co-purchases change nothing until the next refresh ranks again
    bought = _buy_more(api, people, random.Random(7))
    assert all(members(sku, bought) == before[sku] for sku in SKUS + SOLO)
    refreshed = services.segments.refresh(datetime.now(UTC), CTX)
    after = _top3_holders(people)
    assert after != before
    for sku in SKUS + SOLO:
        assert members(sku, refreshed) == after[sku], sku
    with services.read_store.snapshot() as tx:
        flips = {
            (c["segment_id"], c["customer_id"], c["change"])
            for c in segment_queries.changes(tx)
            if c["position"] == refreshed
        }
    expected = {
        (f"top3-{sku}", c, "entered" if c in after[sku] else "exited")
        for sku in SKUS + SOLO
        for c in before[sku] ^ after[sku]
    }
    assert flips == expected

    # no profiling consent: out at once, whatever the last ranking said
    (leaver, skus) = next((c, [s for s in SKUS if c in after[s]]) for c in sorted(after[SKUS[6]]))
    withdrawn = _batch(
        api, [{"type": "consent", "customer_id": leaver, "purpose": "profiling", "granted": False}]
    )
    for sku in skus:
        assert members(sku, withdrawn) == after[sku] - {leaver}

    projector = SegmentsProjector()
    assert (
        rebuild(services.feed, services.read_store, projector, verify_only=True).differences == []
    )


def test_the_top3_field_takes_an_item_label(api: Api) -> None:
    for value in (["sku-1"], "", "a\u202eb"):
        rule = {"field": "recommendations.top3", "op": "contains", "value": value}
        got = api.client.put(
            "/v1/segments/bad", json={"name": "bad", "rule": rule}, headers=api.headers("admin")
        )
        assert (got.status_code, got.json().get("field")) == (422, "rule.value"), got.text
    rule = {"field": "recommendations.top3", "op": "eq", "value": "sku-1"}
    got = api.client.put(
        "/v1/segments/bad", json={"name": "bad", "rule": rule}, headers=api.headers("admin")
    )
    assert (got.status_code, got.json().get("field")) == (422, "rule.op"), got.text


def _put(api: Api, segment_id: str, body: dict[str, Any]) -> int:
    answer = api.client.put(f"/v1/segments/{segment_id}", json=body, headers=api.headers("admin"))
    assert answer.status_code in (200, 201), answer.text
    return int(answer.json()["position"])
