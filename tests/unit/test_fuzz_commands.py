"""Fuzzing the command-topic parser as the ingest process uses it (:func:`read_command`, then the
service's batch path): any record value becomes a command, a refusal naming its field, or an
:class:`UndecodableCommand` (dead-lettered), never another exception; every refusal and outcome
is publishable as a result."""

from __future__ import annotations

import dataclasses
from typing import Any
from uuid import uuid4

import orjson
from hypothesis import event, example, given
from hypothesis import strategies as st

from commands.messages import COMMAND_TYPES, PROFILE_FIELDS, Command, parse_command
from commands.service import CommandService, Context
from consumers.ingest import UndecodableCommand, read_command
from domain.errors import DomainError, InvalidInput
from tests.fuzz_support import JSON_VALUES, fuzz, json_bytes

COORDINATES = "kafka:customer.commands:0:7"
FIELDS = sorted(
    {f.name for cls in COMMAND_TYPES.values() for f in dataclasses.fields(cls)} | PROFILE_FIELDS
)
PLAUSIBLE = st.sampled_from(
    [
        "0b6e1d2c-55f7-4c1e-9a65-3f2b9c4a7d11",
        "2024-05-01T10:00:00+02:00",
        "2024-05-01T10:00:00",
        "12.50",
        "-1",
        "EUR",
        "ada@example.com",
        "+4915112345678",
        {"system": "shop", "id": "00042"},
        {"shop": "00042"},
        [{"sku": "a", "quantity": 1}],
        2**53,
        2**64,
        "x" * 10_000,
    ]
)
DOCS = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(COMMAND_TYPES)) | JSON_VALUES},
    optional={name: PLAUSIBLE | JSON_VALUES for name in FIELDS},
)
"""Any document of a command's shape (mostly refused)."""

CUSTOMER = "0b6e1d2c-55f7-4c1e-9a65-3f2b9c4a7d11"
VALID: dict[str, dict[str, Any]] = {
    "register": {"name": "Ada", "email": "ada@example.com", "attributes": {"city": "Bonn"}},
    "update": {"name": "Ada King", "phone": "+4915112345678"},
    "contact": {"channel": "phone", "direction": "inbound", "summary": "hello"},
    "tag": {"tag": "vip"},
    "untag": {"tag": "vip"},
    "purchase": {"order_id": "o-1", "amount": "12.50", "currency": "EUR"},
    "feedback": {"nps": 9, "comment": "fine"},
    "consent": {"purpose": "marketing", "granted": True},
    "lifecycle": {"stage": "customer"},
    "churn": {"reason": "moved"},
    "reactivate": {},
    "merge": {"duplicate_id": "5d1f1b7e-8d8e-4a3a-b1f5-6c0c4a1e2b33"},
    "unmerge": {"duplicate_id": "5d1f1b7e-8d8e-4a3a-b1f5-6c0c4a1e2b33"},
    "erase": {},
    "earn_points": {"points": 100},
    "redeem_points": {"points": 10},
    "expire_points": {"points": 5},
    "tier": {"tier": "gold"},
}
REGISTER = {"type": "register", "customer_id": CUSTOMER, "name": "Ada"}
"""Registers the customer :data:`COMMANDS` act on."""


@st.composite
def _commands(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(VALID)))
    doc = {"type": kind, "customer_id": CUSTOMER, **VALID[kind]}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
        if draw(st.booleans()):
            doc[name] = draw(PLAUSIBLE | JSON_VALUES)
        else:
            doc.pop(name, None)
    return doc


COMMANDS = _commands()
"""A well-formed command on customer :data:`CUSTOMER` with up to two fields changed or gone."""


def _read(
    value: bytes | None, coordinates: str = COORDINATES
) -> tuple[str, Command | DomainError] | None:
    try:
        key, item = read_command(value, coordinates)
    except UndecodableCommand:
        return None
    assert isinstance(key, str) and isinstance(item, (Command, DomainError)), item
    if isinstance(item, InvalidInput):
        assert item.field, item
    if isinstance(item, DomainError):
        orjson.dumps({"idempotency_key": key, "problem": item.to_dict()})  # its result
    return key, item


@fuzz(150)
@given(raw=st.binary(max_size=200))
@example(raw=None)  # a tombstone
@example(raw=b"\xff{}")
@example(raw=b'{"type": "tag", "tag": "\\udc00"}')  # an unpaired surrogate escape
@example(raw=b"[]")
@example(raw=b'{"type": "register", "name": "' + b"x" * 2_000_000 + b'"}')  # oversized
def test_arbitrary_bytes_are_read_or_dead_lettered(raw: bytes | None) -> None:
    _read(raw)


@fuzz(400)
@given(doc=st.one_of(DOCS, COMMANDS, COMMANDS, COMMANDS), cut=st.none() | st.integers(min_value=0))
@example(doc={"type": "register", "name": "Ada", "idempotency_key": ["k"]}, cut=None)
@example(doc={"type": "register", "name": "Ada", "idempotency_key": 7}, cut=None)
@example(doc={"type": "earn_points", "points": 2**64}, cut=None)
@example(doc={"type": "purchase", "amount": 12.5, "order_id": "o", "currency": "EUR"}, cut=None)
def test_command_documents_are_commands_or_refusals_naming_a_field(
    service: CommandService, ctx: Context, doc: dict[str, Any], cut: int | None
) -> None:
    customer = str(uuid4())  # each example on a customer of its own
    doc = {name: customer if value == CUSTOMER else value for name, value in doc.items()}
    raw = json_bytes(doc)
    read = _read(raw if cut is None else raw[: cut % (len(raw) + 1)], f"kafka:c:0:{customer}")
    if read is not None and isinstance(read[1], Command):  # what ingest runs next
        register = parse_command({**REGISTER, "customer_id": customer})
        outcomes = service.execute_batch([register, read[1]], ctx)
        event(f"outcome {outcomes[1].status}")
        orjson.dumps({"idempotency_key": read[0]} | outcomes[1].to_dict())


def test_a_refused_idempotency_key_keys_the_result_by_coordinates() -> None:
    key, item = read_command(b'{"type": "tag", "idempotency_key": ["k"]}', COORDINATES)
    assert key == COORDINATES and isinstance(item, InvalidInput)
    assert item.field == "idempotency_key"
