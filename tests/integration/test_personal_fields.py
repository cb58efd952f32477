"""Every personal field of every event type, from the declaration (``Personal`` markers on the
event classes), over HTTP on SQLite and on real PostgreSQL: each is encrypted at rest (the
stored event holds no byte of it, while opening the event gives it back), masked for keys
without ``pii`` on every read route (while a ``pii`` key sees it), and gone after erasure from
every table of every read model and from the audit export.

A personal field added to an event without a story here fails
:func:`test_every_declared_personal_field_has_a_story`, so the proof keeps up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.utils import get_topic

from domain.events import EVENT_CLASSES, PERSONAL_FIELDS
from domain.personal import Personal
from projections.registry import all_projectors
from tests.api_support import Api, running_api

# (event type, field) -> the values it carries in the story below (unique, searchable text)
DUP_EMAIL, DUP_PHONE = "pzqdup.mail@example.com", "+493090182799"
STORY: dict[tuple[str, str], list[str]] = {
    ("customer.registered", "name"): ["Pzqreg Name"],
    ("customer.registered", "email"): ["pzqreg.mail@example.com"],
    ("customer.registered", "phone"): ["+493090182711"],
    ("customer.registered", "attributes"): ["pzqreg-attribute"],
    ("customer.registered", "external_ids"): ["pzqreg-extid"],
    ("customer.profile_updated", "changes"): ["Pzqupd Name", "pzqupd.mail@example.com"],
    ("customer.profile_updated", "attributes"): ["pzqupd-attribute"],
    ("customer.profile_updated", "external_ids"): ["pzqupd-extid"],
    ("customer.contacted", "subject"): ["Pzqsubject line"],
    ("customer.contacted", "summary"): ["Pzqsummary text"],
    ("customer.contacted", "outcome"): ["Pzqoutcome text"],
    ("customer.feedback_recorded", "comment"): ["Pzqcomment text"],
    ("customer.duplicate_absorbed", "email"): [DUP_EMAIL],
    ("customer.duplicate_absorbed", "phone"): [DUP_PHONE],
    ("customer.unmerged", "email"): [DUP_EMAIL],
    ("customer.unmerged", "phone"): [DUP_PHONE],
}
ALL_VALUES = sorted({value for values in STORY.values() for value in values})
TOPICS = {get_topic(cls): cls for cls in EVENT_CLASSES}


def test_every_declared_personal_field_has_a_story() -> None:
    declared = {(cls.TYPE, field) for cls in EVENT_CLASSES for field in cls.PERSONAL}
    assert set(STORY) == declared
    for cls in EVENT_CLASSES:  # one name, one shape: redaction and masking go by the name
        assert all(PERSONAL_FIELDS[f] is shape for f, shape in cls.PERSONAL.items())
    assert {shape for shape in PERSONAL_FIELDS.values()} == set(Personal)


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with running_api(tmp_path, url) as running:
        yield running


def write(api: Api, method: str, path: str, body: Any = None, **headers: str) -> dict[str, Any]:
    response = api.client.request(
        method,
        path,
        content=None if body is None else json.dumps(body).encode(),
        headers=api.headers("admin", **{"content-type": "application/json"}, **headers),
    )
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


def caught_up(api: Api) -> None:
    runner = api.app.state.services.runner
    assert runner is not None, "the test API runs embedded"
    runner.catch_up()


def read_everything(api: Api, customers: list[str], *, pii: bool) -> str:
    """Every read route's answer about ``customers``, as one text: as a key with ``pii``
    (admin), or as the reader and auditor keys (without it)."""
    profiles = ["/v1/customers?limit=500"]
    audit = ["/v1/audit/events?limit=1000"]
    for customer in customers:
        profiles += [f"/v1/customers/{customer}", f"/v1/customers/{customer}?version=2"]
        audit += [f"/v1/customers/{customer}/history?limit=1000"]
    answers = []
    for who, paths in (("reader", profiles), ("auditor", audit)):
        for path in paths:
            response = api.client.get(path, headers=api.headers("admin" if pii else who))
            assert response.status_code in (200, 410), (path, response.text)
            answers.append(response.text)
    return "\n".join(answers)


def found(values: list[str], text: str) -> set[str]:
    return {value for value in values if value.lower() in text.lower()}


def read_models(api: Api) -> str:
    """Every row of every table of every read model, as one text."""
    rows = []
    with api.app.state.services.read_store.snapshot() as tx:
        for projector in all_projectors():
            for table in projector.tables:
                rows += [repr(row) for row in tx.fetchall(f"SELECT * FROM {{{table}}}")]
    return "\n".join(rows)


def test_each_personal_field_is_sealed_masked_and_erased_everywhere(api: Api) -> None:
    ada = write(
        api,
        "POST",
        "/v1/customers",
        {"name": "Pzqreg Name", "email": "pzqreg.mail@example.com", "phone": "+493090182711"}
        | {"attributes": {"city": "pzqreg-attribute"}, "external_ids": {"shop": "pzqreg-extid"}},
    )["customer_id"]
    write(
        api,
        "PATCH",
        f"/v1/customers/{ada}",
        {"name": "Pzqupd Name", "email": "pzqupd.mail@example.com"}
        | {"attributes": {"city": "pzqupd-attribute"}, "external_ids": {"shop": "pzqupd-extid"}},
        **{"If-Match": '"1"'},
    )
    write(
        api,
        "POST",
        f"/v1/customers/{ada}/contacts",
        {"channel": "phone", "direction": "inbound", "subject": "Pzqsubject line"}
        | {"summary": "Pzqsummary text", "outcome": "Pzqoutcome text"},
    )
    write(api, "POST", f"/v1/customers/{ada}/feedback", {"nps": 9, "comment": "Pzqcomment text"})
    survivor = write(api, "POST", "/v1/customers", {"name": "Survivor"})["customer_id"]
    dup = write(
        api, "POST", "/v1/customers", {"name": "Dup", "email": DUP_EMAIL, "phone": DUP_PHONE}
    )["customer_id"]
    write(api, "POST", f"/v1/customers/{survivor}/merge", {"duplicate_id": dup})
    caught_up(api)
    customers = [ada, survivor, dup]
    seen_merged = read_everything(api, customers, pii=True)
    hidden_merged = read_everything(api, customers, pii=False)
    write(api, "POST", f"/v1/customers/{survivor}/unmerge", {"duplicate_id": dup})
    caught_up(api)

    # at rest: no stored event holds a byte of its personal values; opened, each field has them
    store = api.app.state.services.store
    carried: set[tuple[str, str]] = set()
    for notification in store.notifications(0, 1000):
        cls = TOPICS.get(notification.topic)
        if cls is None:
            continue
        event = store.personal_mapper.to_domain_event(notification)
        for field in cls.PERSONAL:
            values = STORY[cls.TYPE, field]
            opened = found(values, repr(getattr(event, field)))
            assert not found(values, notification.state.decode()), (cls.TYPE, field)
            if opened:
                carried.add((cls.TYPE, field))
    assert carried == set(STORY)

    # masked: without pii no read route shows a value; with pii they show every one
    seen = seen_merged + read_everything(api, customers, pii=True)
    hidden = hidden_merged + read_everything(api, customers, pii=False)
    assert found(ALL_VALUES, hidden) == set()
    assert found(ALL_VALUES, seen) == set(ALL_VALUES)
    assert found(ALL_VALUES, read_models(api)) == set(ALL_VALUES)  # the scan can see them

    # erased: gone from every read model and the audit export (which only ever sealed them)
    write(api, "DELETE", f"/v1/customers/{ada}")
    write(api, "DELETE", f"/v1/customers/{dup}")
    caught_up(api)
    assert found(ALL_VALUES, read_models(api)) == set()
    export = api.client.get("/v1/audit/export", headers=api.headers("auditor"))
    assert export.status_code == 200
    records = [json.loads(line) for line in export.text.splitlines()]
    envelopes = [r["envelope"] for r in records if r["record"] == "event"]
    sealed = {(e["type"], e["customer_id"]) for e in envelopes if e["sealed"]}
    assert {kind for kind, _ in sealed} >= {kind for kind, _ in STORY}
    assert found(ALL_VALUES, export.text) == set()
    assert found(ALL_VALUES, read_everything(api, customers, pii=True)) == set()
