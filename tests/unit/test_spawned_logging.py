"""A process spawned by ours logs as ours does: JSON on stderr, scrubbed, never on stdout."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable

import orjson
import pytest
import structlog

from infra.logging import configure_logging, for_spawned_process

pytestmark = pytest.mark.usefixtures("restored_logging")


def _child(configure: Callable[[], None]) -> None:
    configure()
    structlog.get_logger("spawned").warning("child.said", contact="ada@example.com")


def test_a_spawned_process_logs_json_on_stderr_only(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    child = multiprocessing.get_context("spawn").Process(
        target=_child, args=(for_spawned_process(),)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0
    out, err = capfd.readouterr()
    assert out == ""
    (line,) = [orjson.loads(text) for text in err.splitlines() if "child.said" in text]
    assert line["event"] == "child.said"
    assert line["contact"] == "***@example.com"  # scrubbed, as in the parent
    assert line["level"] == "warning"


def test_the_child_gets_the_parents_level_and_renderer() -> None:
    configure_logging("ERROR", json=False)
    assert for_spawned_process().keywords == {"level": "ERROR", "json": False}
