"""The live bench splits each command's e2e lag at the broker (api.bench.lag_stages): the two
stages add up to the lag, and commands whose record was not read are left out, not guessed."""

from __future__ import annotations

import pytest

from api.bench.lag_stages import stages
from api.bench.report import _stages


def test_the_two_stages_add_up_to_each_commands_lag() -> None:
    shown = [("a", 1, 100.000, 100.050), ("a", 2, 100.010, 100.300), ("b", 7, 100.020, 100.040)]
    published = {("a", 1): 100.005, ("a", 2): 100.008, ("b", 7): 100.030}
    split = stages(shown, published)
    assert split["matched"] == split["shown"] == 3
    ack, visible = split["ack_to_published_ms"], split["published_to_visible_ms"]
    assert ack["min"] == pytest.approx(-2.0)  # the relay sent before the client had its answer
    assert ack["max"] == pytest.approx(10.0)
    assert visible["min"] == pytest.approx(10.0)
    assert visible["max"] == pytest.approx(292.0)


def test_commands_without_a_record_read_are_counted_not_guessed() -> None:
    split = stages([("a", 1, 1.0, 1.1), ("c", 3, 1.0, 1.2)], {("a", 1): 1.05})
    assert (split["matched"], split["shown"]) == (1, 2)
    assert split["published_to_visible_ms"]["n"] == 1


def test_the_report_names_both_stages_and_nothing_without_them() -> None:
    split = stages([("a", 1, 1.0, 1.1)], {("a", 1): 1.02})
    assert _stages(split) == (
        "; ack → published p50 20.0 / p99 20.0 ms, published → visible p50 80.0 / p99 80.0 ms"
        " (1 of 1 commands)"
    )
    assert _stages({"error": "TimeoutError()"}) == "; no split at the broker (TimeoutError())"
    assert _stages(None) == ""
