"""The transcoder's tagged datetimes: the text is ``isoformat()``'s, whichever way it is made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.transcoder import OrjsonTranscoder, iso_text

# timedelta(seconds=30): orjson would round it to +00:01, so it must never take orjson's path
ZONES = st.sampled_from(
    [
        UTC,
        None,
        timezone(timedelta(hours=2)),
        timezone(timedelta(seconds=30)),
        timezone(timedelta(0), "UTC"),
        ZoneInfo("UTC"),
        ZoneInfo("Europe/London"),
    ]
)


@settings(max_examples=500, deadline=None)
@given(moment=st.datetimes(timezones=ZONES))
def test_a_datetime_is_stored_as_its_isoformat(moment: datetime) -> None:
    assert iso_text(moment) == moment.isoformat()
    assert iso_text(moment.replace(fold=1)) == moment.replace(fold=1).isoformat()
    encoded = OrjsonTranscoder().encode({"at": moment})
    assert orjson.loads(encoded) == {"at": {"_type_": "datetime", "_data_": moment.isoformat()}}
    if moment.tzinfo is None or isinstance(moment.tzinfo, timezone):  # a fixed offset
        assert OrjsonTranscoder().decode(encoded) == {"at": moment}


def test_the_edges_of_the_calendar_and_whole_seconds() -> None:
    for moment in (
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 12, 1, 6, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 6, 0, 0, 1, tzinfo=UTC),
    ):
        encoded = OrjsonTranscoder().encode([moment])
        assert encoded == b'[{"_type_":"datetime","_data_":"' + moment.isoformat().encode() + b'"}]'


class _Moment(datetime):
    """A datetime subclass (as libraries make them): stored as its ``isoformat()``, too."""


def test_a_datetime_subclass_is_stored_as_its_isoformat() -> None:
    moment = _Moment(2026, 12, 1, 6, 0, 0, 5, tzinfo=UTC)
    encoded = OrjsonTranscoder().encode({"at": moment})
    assert orjson.loads(encoded) == {"at": {"_type_": "datetime", "_data_": moment.isoformat()}}
