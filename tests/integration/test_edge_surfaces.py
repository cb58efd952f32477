"""Every field of every command, through three surfaces at once: an HTTP route, ``POST
/v1/commands:batch`` and ``parse_command`` (what the Kafka command topic and CSV import use).

Each surface runs against its own store, fed the same sequence of inputs, so the stores stay in
step. For any generated value (valid, ambiguous, lossy, or text no backend can store), the
surfaces must decide alike; a refusal names the field; an acceptance stores the same canonical
event on every surface, the envelope validates against the published schema, and sending the
stored value again stores it unchanged (re-normalisation is idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap import Services, build
from commands.messages import parse_command
from commands.service import Context
from consumers.migrate import migrate
from domain.errors import DomainError
from domain.text_policy import Text, text_problem
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


@pytest.fixture(scope="module")
def surfaces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Surface]]:
    """One app (one process can serve one); each surface swaps in its own store."""
    root = Path(tmp_path_factory.mktemp("surfaces"))
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


TEXT = st.text(st.characters(exclude_categories=()), max_size=10) | st.sampled_from(
    [
        "Nul\u0000Byte",
        "Zoe\u0308 \t Miller",
        " padded ",
        "a\r\nb",
        "\u202egnirts",
        "a\u200bb",
        "👩\u200d💻",
        "x" * 1001,
        "",
    ]
)
INTEGERS = st.integers(-3, 12) | st.sampled_from([True, False, "7", 7.0, 2**60, None])
AMBIGUOUS_TIMES = [
    "2024-01-01",
    "2024-01-01T12:00:00",
    "2024-01-01T12:00:00-00:00",
    "2024-01-01T12:00:00.1234567Z",
    "1899-12-31T23:59:59Z",
    "2999-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",  # before CLIENTELE_BUSINESS_TIME_FLOOR
    1_700_000_000,
    1_700_000_000_000,
]
TIMES = st.sampled_from(
    [
        "2024-01-01T12:00:00Z",
        "2024-01-01T14:00:00+02:00",
        "2024-01-01t12:00:00.5z",
        None,
        *AMBIGUOUS_TIMES,
    ]
)
AMBIGUOUS_AMOUNTS = ["1E+2", "-0", ".5", "12.", "1,000", "0.00001", "1e12", 12, 12.5, True]


def unstorable(value: object) -> bool:
    """Text that no field may hold, whatever its kind."""
    return isinstance(value, str) and text_problem(value, Text.MULTILINE) is not None


def not_an_integer(value: object) -> bool:
    return isinstance(value, bool | str | float) or (isinstance(value, int) and value > 2**53)


def one_of(values: list[Any]) -> Any:
    return lambda value: any(value == v and type(value) is type(v) for v in values)


def never(_: object) -> bool:
    return False


# (command, field, values, which values must be refused as ambiguous, lossy or unstorable)
CASES: list[tuple[str, str, st.SearchStrategy[Any], Any]] = [
    ("register", "name", TEXT, unstorable),
    (
        "register",
        "email",
        TEXT | st.sampled_from(["ADA@Example.com", "a@b", "x\u0000@y.de"]),
        unstorable,
    ),
    (
        "register",
        "phone",
        st.sampled_from(["030 901820", "+1 (650) 253-0000", "+49 30 901820 abc", "1-800-FLOWERS"])
        | st.sampled_from(["030 901820 ext. 12", "+49 30 9018\uff120", "", None, 4930901820]),
        one_of(["+49 30 901820 abc", "1-800-FLOWERS", "030 901820 ext. 12", 4930901820]),
    ),
    ("register", "source", TEXT, unstorable),
    ("register", "lifecycle_stage", st.sampled_from(["NEW", " loyal ", "vip", 1, None]), never),
    ("register", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    (
        "register",
        "external_ids",
        st.dictionaries(
            st.sampled_from(["shop", "Legacy_CRM", "1bad", "x\u0000"]),
            TEXT | INTEGERS | st.sampled_from(["00042", " C-17 "]),
            max_size=2,
        )
        | st.sampled_from([None, [], "shop"]),
        lambda v: (
            not isinstance(v, dict)
            or any(not isinstance(k, str) or not k[:1].isalpha() for k in v)
            or any(unstorable(x) or isinstance(x, int) for x in v.values())
        ),
    ),
    (
        "register",
        "attributes",
        st.dictionaries(
            st.sampled_from(["city", "Bad", "x\u0000"]),
            TEXT | INTEGERS | st.floats() | st.lists(st.integers(), max_size=1),
            max_size=2,
        )
        | st.sampled_from([None, [], "city"]),
        lambda v: (
            not isinstance(v, dict)
            or any(unstorable(x) or (isinstance(x, int) and x > 2**53) for x in v.values())
        ),
    ),
    (
        "update",
        "attributes",
        st.sampled_from([None, [], {}, {"city": None}, {"city": "Rome"}]),
        one_of([None, []]),
    ),
    (
        "update",
        "external_ids",
        st.sampled_from([None, [], {}, {"shop": None}, {"shop": "s-1"}, {"SHOP": 7}]),
        one_of([None, [], {"SHOP": 7}]),
    ),
    ("update", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    ("contact", "subject", TEXT, unstorable),
    ("contact", "summary", TEXT, unstorable),
    ("contact", "channel", st.sampled_from(["EMAIL", "fax", " chat ", 3, None]), never),
    ("contact", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    (
        "tag",
        "tag",
        TEXT.filter(lambda t: "/" not in t and t.strip(".") and t.isprintable()),
        unstorable,
    ),
    (
        "tag",
        "tag",
        st.sampled_from(["C++", "C#", "日本", "VIP Gold!!", "Gold_Member", "!!!"]),
        one_of(["VIP Gold!!", "!!!"]),
    ),
    ("purchase", "order_id", TEXT, unstorable),
    (
        "purchase",
        "amount",
        st.sampled_from(["12.50", " 7 ", "007.50", None, "0" * 41, *AMBIGUOUS_AMOUNTS]),
        one_of(AMBIGUOUS_AMOUNTS),
    ),
    ("purchase", "currency", st.sampled_from(["eur", " USD ", "EURO", "XXY", 978, None]), never),
    ("purchase", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    (
        "purchase",
        "items",
        st.lists(
            st.fixed_dictionaries({}, optional={"sku": TEXT | INTEGERS, "quantity": INTEGERS})
            | st.dictionaries(st.sampled_from(["note", "bad key"]), TEXT | INTEGERS, max_size=2)
            | st.sampled_from(["sku", None, {"a": {"b": {"c": {"d": 1}}}}]),
            max_size=2,
        ),
        lambda items: any(
            isinstance(item, dict) and not_an_integer(item.get("quantity")) for item in items
        ),
    ),
    ("feedback", "nps", INTEGERS, not_an_integer),
    ("feedback", "comment", TEXT, unstorable),
    ("feedback", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    ("tag", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    (
        "consent",
        "granted",
        st.sampled_from([True, False, "yes", "false", 1, 0, None]),
        lambda v: not isinstance(v, bool),
    ),
    ("consent", "source", TEXT, unstorable),
    ("consent", "purpose", st.sampled_from(["Profiling", "newsletter", " sms_marketing "]), never),
    ("consent", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    ("lifecycle", "stage", st.sampled_from(["LOYAL", "at_risk", "gold", 2, None]), never),
    ("lifecycle", "reason", TEXT, unstorable),
    ("lifecycle", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    ("churn", "reason", TEXT, unstorable),
    ("churn", "occurred_at", TIMES, one_of(AMBIGUOUS_TIMES)),
    (
        "merge",
        "duplicate_id",
        st.sampled_from(
            [
                "not-a-uuid",
                123,
                None,
                "",
                "3F2B8C9E-1D2A-4B5C-8D9E-0F1A2B3C4D5E",
                "3f2b8c9e1d2a4b5c8d9e0f1a2b3c4d5e",
                "{3f2b8c9e-1d2a-4b5c-8d9e-0f1a2b3c4d5e}",
            ]
        ),
        lambda v: not isinstance(v, str),
    ),
]


@pytest.mark.parametrize(
    ("kind", "field", "values", "refuse"), CASES, ids=[f"{k}.{f}" for k, f, _, _ in CASES]
)
def test_every_surface_decides_every_field_alike(
    surfaces: list[Surface],
    kind: str,
    field: str,
    values: st.SearchStrategy[Any],
    refuse: Callable[[Any], bool],
) -> None:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(values)
    def check(value: Any) -> None:
        decision = decide_everywhere(surfaces, kind, field, value)
        if refuse(value):
            assert not decision.accepted and decision.code == "validation", (value, decision)
        if decision.accepted:
            check_stable(surfaces, kind, field, decision)

    check()
