"""The lean read paths take a stored moment's text for its ``isoformat()`` only when it is
exactly that text (:mod:`infra.lean_rows`), and time travel's envelopes keep those texts, so
the fold formats no moment again (:mod:`infra.lean_history`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.lean_history import opened_history
from infra.lean_rows import parse
from infra.store import EventStore
from tests.lean_history_support import a_customer_with_contacts
from tests.unit.test_lean_rows import TOPIC, _state


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-11-30T12:00:00.123+00:00",  # isoformat() writes six digits: .123000
        "2026-11-30T12:00:00.000000+00:00",  # isoformat() writes no zero microseconds
        "2026-11-30T12:00:00,123456+00:00",  # another separator of the fraction
        "2026-11-30T12:00:00+02:00",  # another offset: the mapper's path reads it
        "2026-W48-1T12:00:00+00:00",  # a week date
        "2026-11-30T12:00+00:00:00",  # no seconds, an offset with seconds
        "20261130T120000+00:00",  # the basic format
        "2026-11-30T12:00:00-00:00",  # UTC, but not as isoformat() writes it
        "2026-11-30T12:00:00+00,00",  # UTC to the parser, another offset separator
        "2026-11-30T12:00:00.123456+00.00",  # the same, with microseconds
        "2026-11-30T12:00:00.123456Z",
        "2026-11-30T12:00:00.123+00:00:00",  # isoformat()'s length, an offset with seconds
        "2026-11-30T12:00:00.1+00:00:00.0",
    ],
)
def test_a_moment_not_in_isoformats_text_is_left_to_the_mapper(occurred_at: str) -> None:
    datetime.fromisoformat(occurred_at)  # a datetime, only not in isoformat()'s text
    assert parse(TOPIC, _state(occurred_at)) is None


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        lambda moment: moment.replace(tzinfo=UTC)
    )
)
def test_a_moment_in_isoformats_text_is_read_with_it(moment: datetime) -> None:
    meta = parse(TOPIC, _state(moment.isoformat()))
    assert meta is not None
    assert (meta.occurred_at, meta.occurred) == (moment.isoformat(), moment)


def test_time_travels_envelopes_keep_the_stored_texts(any_store: EventStore) -> None:
    customer = a_customer_with_contacts(any_store)
    rows = any_store.backend.head_and_rows(customer)[1]
    stored: list[Any] = [orjson.loads(state) for _, _, _, state in rows]
    envelopes = list(opened_history(any_store, customer))
    assert len(envelopes) == len(stored) == 3
    for envelope, state in zip(envelopes, stored, strict=True):
        for name, key in (("occurred_text", "occurred_at"), ("recorded_text", "timestamp")):
            kept = envelope.__dict__.get(name)  # read as stored, not formatted when asked for
            assert kept == state[key]["_data_"]
            assert getattr(envelope, name) == kept
