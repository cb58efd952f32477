"""Fuzzing the envelope decoder as the projection consumer uses it (:func:`open_values`): any
bytes on ``customer.events`` become an opened envelope or a poison error that is dead-lettered
(:data:`POISON`), never another exception that would stop the consumer on the record."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from commands import messages as m
from commands.service import CommandService, Context
from consumers.record_values import POISON, open_values
from consumers.store_feed import StoreFeed
from domain.events import EVENT_TYPES
from infra.envelope import Envelope
from infra.store import EventStore
from tests.fuzz_support import JSON_VALUES, fuzz, json_bytes


@pytest.fixture
def sealed(store: EventStore, service: CommandService, ctx: Context) -> list[Envelope]:
    """Real published envelopes, personal data sealed: a registration and a contact."""
    cid = service.execute(m.RegisterCustomer(name="Ada", email="ada@example.com"), ctx).customer_id
    service.execute(m.RecordContact(customer_id=cid, channel="phone", direction="inbound"), ctx)
    return StoreFeed(store).read_sealed(0, 10)


def _classified(store: EventStore, value: bytes | None) -> Envelope | Exception:
    [item] = open_values([value], store.personal)
    assert isinstance(item, (Envelope, *POISON)), item
    if isinstance(item, Envelope):  # what was accepted has the declared types
        assert isinstance(item.actor, str) and isinstance(item.correlation_id, str)
        assert type(item.version) is int and type(item.position) is int
        assert item.occurred_at.utcoffset() is not None and isinstance(item.data, dict)
        for optional in (item.causation_id, item.prev_hash, item.hash, item.sealed):
            assert optional is None or isinstance(optional, str)
    return item


@fuzz(300)
@given(raw=st.binary(max_size=300))
@example(raw=None)  # a tombstone
@example(raw=b"")
@example(raw=b"\xff\xfe{}")  # not UTF-8
@example(raw=b'"\\ud800"')  # an unpaired surrogate escape
@example(raw=b"1e400")  # beyond a double
@example(raw=b"[" * 2000)  # deeper than any parser's limit
def test_arbitrary_bytes_decode_or_are_poison(store: EventStore, raw: bytes | None) -> None:
    _classified(store, raw)


@fuzz(200)
@given(data=st.data())
def test_truncated_envelopes_are_poison(
    store: EventStore, sealed: list[Envelope], data: st.DataObject
) -> None:
    raw = data.draw(st.sampled_from(sealed)).to_bytes()
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    assert isinstance(_classified(store, raw[:cut]), POISON)


KEYS = [*sorted(Envelope.__dataclass_fields__.keys() - {"headers"}), "id", "data_owner"]


@fuzz(600)
@given(data=st.data())
def test_wrong_types_and_shapes_decode_strictly_or_are_poison(
    store: EventStore, sealed: list[Envelope], data: st.DataObject
) -> None:
    doc: dict[str, Any] = data.draw(st.sampled_from(sealed)).to_dict()
    for key in data.draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True)):
        if key == "data_owner" and isinstance(doc.get("data"), dict):  # whose key seals it
            doc["data"] = {**doc["data"], key: data.draw(JSON_VALUES)}
        elif key == "type":
            doc[key] = data.draw(st.sampled_from(sorted(EVENT_TYPES)) | JSON_VALUES)
        elif data.draw(st.booleans()):
            doc[key] = data.draw(JSON_VALUES)
        else:
            doc.pop(key, None)
    _classified(store, json_bytes(doc))


@pytest.mark.parametrize(
    "change",
    [
        {"schema_version": "1"},
        {"schema_version": True},
        {"schema_version": 2},
        {"version": True},
        {"version": 0},
        {"position": 1.0},
        {"actor": 7},
        {"correlation_id": None},
        {"causation_id": 5},
        {"prev_hash": ["x"]},
        {"occurred_at": "2024-05-01T10:00:00"},  # no offset
        {"recorded_at": 1714557600},
        {"customer_id": 7},
        {"sealed": "v1.not-base64!"},
    ],
)
def test_wrong_types_are_poison_not_coerced(
    store: EventStore, sealed: list[Envelope], change: dict[str, Any]
) -> None:
    assert isinstance(_classified(store, json_bytes(sealed[0].to_dict() | change)), POISON)


def test_a_sealed_envelope_naming_no_customer_as_key_owner_is_poison(
    store: EventStore, sealed: list[Envelope]
) -> None:
    """Was a ValueError out of the consumer's batch (it stopped on the record, for ever)."""
    absorbed = sealed[0].to_dict() | {"type": "customer.duplicate_absorbed"}
    absorbed["data"] = {**absorbed["data"], "data_owner": "not-a-customer"}
    assert isinstance(_classified(store, json_bytes(absorbed)), POISON)


@fuzz(50)
@given(size=st.integers(min_value=1, max_value=4_000_000))
def test_oversized_values_are_poison(store: EventStore, size: int) -> None:
    assert isinstance(_classified(store, b'{"type": "' + b"x" * size + b'"}'), POISON)


def test_real_envelopes_still_decode_and_open(store: EventStore, sealed: list[Envelope]) -> None:
    registered, contacted = (_classified(store, e.to_bytes()) for e in sealed)
    assert isinstance(registered, Envelope) and registered.data["name"] == "Ada"
    assert isinstance(contacted, Envelope) and contacted.sealed is None
