"""Tests see the lines of loggers first used after a CLI command ran in-process: the command
configures logging, and a logger cached under that configuration would keep its processors
and escape capture_logs once structlog is configured anew (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs
from typer.testing import CliRunner

from api.cli import app
from infra import logging as infra_logging
from infra.logging import configure_logging


@pytest.mark.usefixtures("restored_logging")
def test_a_logger_first_used_after_a_command_is_still_captured(tmp_path: Path) -> None:
    before = structlog.get_config()
    missing = CliRunner().invoke(app, ["import", "customers", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2, missing.output
    configured = structlog.get_config()
    assert configured["processors"] is not before["processors"]  # the command configured it
    assert configured["logger_factory"].__class__ is structlog.stdlib.LoggerFactory
    logger = structlog.get_logger("tests.after_a_command")  # as a module's ``log`` is made
    logger.info("first.use")  # outside any capture, under the command's configuration
    structlog.configure(**before)  # as a later test's fixture puts its logging back
    with capture_logs() as captured:
        logger.warning("inside.capture")
    assert [line["event"] for line in captured] == ["inside.capture"]


@pytest.mark.usefixtures("restored_logging")
def test_processes_outside_the_tests_cache_their_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert infra_logging.CACHE_LOGGERS is False  # tests/conftest.py: this process never caches
    configure_logging("INFO")
    assert structlog.get_config()["cache_logger_on_first_use"] is False
    monkeypatch.setattr(infra_logging, "CACHE_LOGGERS", True)  # as in the processes the tests start
    configure_logging("INFO")
    assert structlog.get_config()["cache_logger_on_first_use"] is True
