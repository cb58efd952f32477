"""``GET /v1/customers/{id}/recommendations`` equals a co-occurrence computation done here, from
the test's own ledger of what each customer holds, on SQLite and PostgreSQL; live equals a
rebuild. Refunds, merges (and an unmerge), an erasure and profiling consent all shape it."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from itertools import permutations
from typing import Any
from uuid import UUID, uuid4

from consumers.rebuild import rebuild
from projections.recommendations import RecommendationsProjector
from tests.api_support import Api

SKUS = [f"sku-{n:02d}" for n in range(14)]


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
                {"sku": s, "quantity": rng.randrange(1, 3), "unit_price": "2.50"} for s in skus
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
    return people, int(answer.json()["position"])


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
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [{"sku": j, "score": round(v, 6), "evidence": e} for v, j, e in scored[:limit]]


def test_recommendations_equal_an_independent_co_occurrence_and_a_rebuild(api: Api) -> None:
    people, position = _load(api, random.Random(20))
    reader = api.headers("reader", **{"X-Min-Position": str(position)})
    contributors = sum(1 for p in people.values() if p.live and p.consent and p.orders)
    checked = 0
    answers = {}
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
        assert body["owned"] == sorted(set().union(*person.orders.values()))
        assert not {i["sku"] for i in body["items"]} & set(body["owned"])
        checked += bool(expected)
    consenting = sum(1 for p in people.values() if p.live and p.consent)
    assert checked > consenting // 2  # most answers had items to compare, not only empty lists
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
