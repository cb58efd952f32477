"""The harness behind ``test_edge_surfaces``: three surfaces that take the same command, an
HTTP route, ``POST /v1/commands:batch`` and ``parse_command`` (what the Kafka command topic and
CSV import use), each on its own store, and what each decided.

``decide_everywhere`` sends one field's value through all three and fails unless they decide
alike (a refusal names the field; an acceptance stores the same canonical events, each envelope
valid against the published schema); ``check_stable`` sends the stored value again and expects
it stored unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

import jsonschema

from bootstrap import Services, build
from commands.messages import parse_command
from commands.service import Context
from consumers.migrate import migrate
from domain.errors import DomainError
from infra.envelope import SCHEMA_PATH, Envelope
from tests.api_support import Api, running_api

SCHEMA = jsonschema.Draft202012Validator(
    json.loads(SCHEMA_PATH.read_text()), format_checker=jsonschema.FormatChecker()
)
BASE: dict[str, dict[str, Any]] = {
    "register": {"name": "Ada"},
    "update": {},
    "contact": {"channel": "email", "direction": "inbound"},
    "tag": {"tag": "vip"},
    "purchase": {"order_id": "o-1", "amount": "1.00", "currency": "EUR"},
    "feedback": {"nps": 7},
    "consent": {"purpose": "email_marketing", "granted": True},
    "lifecycle": {"stage": "loyal"},
    "churn": {},
    "merge": {},
}
ROUTES = {  # command type -> (method, path under /v1/customers/{id}, fields in the path)
    "update": ("PATCH", "", ()),
    "contact": ("POST", "/contacts", ()),
    "tag": ("PUT", "/tags/{tag}", ("tag",)),
    "purchase": ("POST", "/purchases", ()),
    "feedback": ("POST", "/feedback", ()),
    "consent": ("PUT", "/consents/{purpose}", ("purpose",)),
    "lifecycle": ("POST", "/lifecycle", ()),
    "churn": ("POST", "/churn", ()),
    "merge": ("POST", "/merge", ()),
}


@dataclass(frozen=True)
class Decision:
    """What one surface made of one command: accepted (with the events' canonical form) or
    refused (problem code and the root of the field it named)."""

    accepted: bool
    code: str | None = None
    field: str | None = None
    events: tuple[tuple[str, str, Any], ...] = ()


def root(field: str | None) -> str | None:
    return None if field is None else field.split(".")[0].split("[")[0]


class Surface:
    def __init__(self, name: str, api: Api, services: Services) -> None:
        self.name, self.api, self.services = name, api, services

    def run(self, kind: str, doc: dict[str, Any], target: UUID | None) -> Decision:
        self.api.app.state.services = self.services
        before = 0 if target is None else self.services.store.customer(target).version
        body = {"type": kind, **doc} | ({} if target is None else {"customer_id": str(target)})
        if self.name == "parse":
            try:
                outcome = self.services.commands.execute(
                    parse_command(body), Context(actor="key:writer")
                )
            except DomainError as error:
                return Decision(False, error.code, root(error.details.get("field")))
            return self._accepted(outcome.customer_id, before)
        if self.name == "batch":
            response = self.post("/v1/commands:batch", {"commands": [body]})
            assert response.status_code == 200, response.text
            result = response.json()["results"][0]
            if result["status"] == "rejected":
                problem = result["problem"]
                return Decision(False, problem["code"], root(problem.get("field")))
            return self._accepted(UUID(result["customer_id"]), before)
        response = self.http(kind, doc, target)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            problem = response.json()
            return Decision(False, problem["type"].rsplit("/", 1)[1], root(problem.get("field")))
        return self._accepted(UUID(response.json()["customer_id"]), before)

    def post(self, path: str, body: Any, method: str = "POST", **headers: str) -> Any:
        raw = json.dumps(body).encode()  # ASCII: unpaired surrogates travel as \ud800 escapes
        return self.api.client.request(
            method,
            path,
            content=raw,
            headers=self.api.headers("admin", **{"content-type": "application/json", **headers}),
        )

    def http(self, kind: str, doc: dict[str, Any], target: UUID | None) -> Any:
        if kind == "register":
            return self.post("/v1/customers", doc)
        method, suffix, in_path = ROUTES[kind]
        path_values = {name: quote(str(doc[name]), safe="") for name in in_path}
        body = {k: v for k, v in doc.items() if k not in in_path}
        path = f"/v1/customers/{target}" + suffix.format(**path_values)
        return self.post(path, body, method, **{"If-Match": "*"} if kind == "update" else {})

    def _accepted(self, customer_id: UUID | None, before: int) -> Decision:
        assert customer_id is not None
        events = []
        for position, event in self.services.store.history(customer_id):
            if event.originator_version > before:
                envelope = Envelope.from_event(event, position)
                SCHEMA.validate(json.loads(envelope.to_bytes()))
                data = {k: v for k, v in envelope.data.items() if k != "duplicate_id"}
                events.append((envelope.type, envelope.occurred_at.isoformat(), data))
        return Decision(True, events=tuple((t, at, json.dumps(d)) for t, at, d in events))


@contextmanager
def three_surfaces(root: Path) -> Iterator[list[Surface]]:
    """The three surfaces, their stores under ``root``. One app (one process can serve one);
    each surface swaps in its own store."""
    with running_api(root) as api, ExitStack() as stack:
        mine = [Surface("http", api, api.app.state.services)]
        for name in ("batch", "parse"):
            settings = api.app.state.services.settings.model_copy(
                update={"database_url": f"sqlite:///{root / name}.db"}
            )
            services = build(settings)
            stack.callback(services.close)
            migrate(services)
            mine.append(Surface(name, api, services))
        yield mine
        api.app.state.services = mine[0].services


def _new_target(surface: Surface) -> UUID:
    surface.api.app.state.services = surface.services
    response = surface.post(
        "/v1/customers", {"name": "Target", "occurred_at": "2000-01-01T00:00:00Z"}
    )
    assert response.status_code == 201, response.text
    return UUID(response.json()["customer_id"])


def decide_everywhere(surfaces: list[Surface], kind: str, field: str, value: Any) -> Decision:
    """The one decision all surfaces made about ``field`` = ``value`` (else the test fails)."""
    doc = {**BASE[kind], field: value}
    decisions = [
        surface.run(kind, doc, None if kind == "register" else _new_target(surface))
        for surface in surfaces
    ]
    timed = field == "occurred_at" and value is not None
    first = _comparable(decisions[0], timed)
    for surface, decision in zip(surfaces, decisions, strict=True):
        assert _comparable(decision, timed) == first, (surface.name, decision, field, value)
    if not first.accepted:
        assert first.field in (field, kind) or first.code != "validation", (first, field, value)
    return decisions[0]


def _comparable(decision: Decision, timed: bool) -> Decision:
    """Business time is compared only when the caller gave it (otherwise it is "now")."""
    if timed:
        return decision
    return Decision(
        decision.accepted,
        decision.code,
        decision.field,
        tuple((kind, "", data) for kind, _, data in decision.events),
    )


def check_stable(surfaces: list[Surface], kind: str, field: str, decision: Decision) -> None:
    """The stored (canonical) value, sent again, is stored unchanged."""
    if not decision.events:  # a no-op (e.g. an empty attribute patch)
        return
    _, at, data = decision.events[0]
    stored = at if field == "occurred_at" else json.loads(data).get(field)
    if stored is None or field in ("email", "external_ids"):  # not in the event, or unique
        return
    timed = field == "occurred_at"
    again = _comparable(decide_everywhere(surfaces[2:], kind, field, stored), timed)
    assert again.accepted and again.events == _comparable(decision, timed).events
