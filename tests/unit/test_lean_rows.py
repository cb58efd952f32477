"""Which stored rows the lean read paths read themselves (:mod:`infra.lean_rows`): a current
customer event with its meta fields and moments as the transcoder stores them; anything else
(an older class version, a moment in another form or no datetime at all) is left to the
mapper's path, which upcasts, normalises or refuses it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from infra.lean_rows import KINDS, parse

TOPIC, (TYPE, VERSION) = next(iter(KINDS.items()))
MOMENT = "2026-11-30T12:00:00.123456+00:00"


def _state(occurred_at: Any = MOMENT, **changes: Any) -> bytes:
    state = {
        "name": "Ada",
        "occurred_at": {"_type_": "datetime", "_data_": occurred_at},
        "timestamp": {"_type_": "datetime", "_data_": MOMENT},
        "actor": "t",
        "correlation_id": "c",
        "causation_id": None,
        "class_version": VERSION,
    }
    return orjson.dumps(state | changes)


def test_a_current_event_is_read_with_its_stored_texts() -> None:
    meta = parse(TOPIC, _state())
    assert meta is not None
    assert (meta.type, meta.occurred_at, meta.recorded_at) == (TYPE, MOMENT, MOMENT)
    assert meta.fields == {"name": "Ada"}
    # built as a bare tuple (no NamedTuple check): a field added to StoredMeta must be parsed
    assert len(meta) == len(type(meta)._fields)


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-11-30T12:00:00Z",  # another writer's UTC: the mapper's path writes +00:00
        "2026-11-30 12:00:00+00:00",  # not isoformat()'s separator
        "2026-11-30Tnoon",  # no datetime
        "",
        17,
    ],
)
def test_a_moment_in_another_form_is_left_to_the_mapper(occurred_at: Any) -> None:
    assert parse(TOPIC, _state(occurred_at)) is None


def test_an_older_class_version_or_a_missing_meta_field_is_left_to_the_mapper() -> None:
    assert parse(TOPIC, _state(class_version=VERSION - 1)) is None
    state = orjson.loads(_state())
    del state["actor"]
    assert parse(TOPIC, orjson.dumps(state)) is None
    assert parse("domain.events:NoSuchEvent", _state()) is None
