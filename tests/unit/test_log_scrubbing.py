"""What still looks like a secret or personal data is scrubbed from every log line: structlog
and standard-library records, messages, fields and exception texts alike."""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from infra.logging import configure_logging

TOKEN = "clt_0123456789ab_SecretPartOfTheToken-_xyz"
EMAIL = "ada.lovelace+crm@example.org"
DETAIL = (
    'duplicate key value violates unique constraint "x"\nDETAIL:  Key (email)=(ada@x.org) exists.'
)
ROW = "new row violates check constraint\nDETAIL:  Failing row contains (42, Ada (the first), ada@x.org)."


@pytest.fixture
def captured(
    capsys: pytest.CaptureFixture[str], restored_logging: None
) -> Iterator[pytest.CaptureFixture[str]]:
    configure_logging("DEBUG", json=True)
    yield capsys


def test_tokens_emails_and_database_row_values_are_scrubbed(
    captured: pytest.CaptureFixture[str],
) -> None:
    log = structlog.get_logger("test.scrub")
    log.info("structlog", token=TOKEN, nested={"to": [EMAIL]}, header=f"Bearer {TOKEN}")
    logging.getLogger("uvicorn.error").warning("stdlib %s %s", TOKEN, EMAIL)
    for text in (DETAIL, ROW):
        try:
            raise RuntimeError(text)
        except RuntimeError as error:
            log.exception("failed", error=error)
            logging.getLogger("eventsourcing").exception("stdlib failed")
    written = captured.readouterr().err
    assert written.count("\n") == 6
    for secret in ("SecretPartOfTheToken", "ada.lovelace", "ada@x.org", "Ada (the first)"):
        assert secret not in written
    for kept in ("clt_0123456789ab_***", "***@example.org", "Key (email)=(***)", "contains (***)"):
        assert kept in written


def test_wire_dumps_stay_out_even_at_debug(captured: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("kafka.protocol.parser").debug("Recv: %r", b"ada@x.org")
    logging.getLogger("kafka.conn").info("connected")
    assert captured.readouterr().err.count("\n") == 1


LOCAL = "Ada Lovelace, 12 Main Street"  # only ever a local variable of the failing frame


def _fails_holding(secret: str) -> None:
    raise RuntimeError("a defect")


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize("json", [True, False])
def test_a_logged_traceback_never_shows_local_variables(
    capsys: pytest.CaptureFixture[str], json: bool
) -> None:
    """Locals may hold personal data (structlog's own default renders them: exc_info is
    turned into plain text before either renderer, :func:`infra.logging.exception_text`)."""
    configure_logging("INFO", json=json)
    try:
        _fails_holding(LOCAL)
    except RuntimeError:
        structlog.get_logger("test.locals").exception("failed")
    written = capsys.readouterr().err
    assert "RuntimeError: a defect" in written and "_fails_holding" in written
    assert "Ada Lovelace" not in written


SOURCES = ("api", "bootstrap", "commands", "consumers", "domain", "infra", "projections")


def _traceback_calls(path: Path) -> list[str]:
    """``path:line`` of each logging call passing ``exc_info`` or calling ``.exception(``
    on a logger (``log``/``logger``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        on_logger = (
            isinstance(func, ast.Attribute)
            and func.attr == "exception"
            and isinstance(func.value, ast.Name)
            and func.value.id in {"log", "logger"}
        )
        if on_logger or any(k.arg == "exc_info" for k in node.keywords):
            found.append(f"{path}:{node.lineno}")
    return found


def test_no_code_logs_a_traceback_through_exc_info() -> None:
    """Long-running code logs ``exception=exception_text(error)``: with ``exc_info`` a
    process without configured logging renders every frame's locals (personal data, 16-25 s
    per error). The whole kind: every package of the project."""
    root = Path(__file__).resolve().parents[2]
    found = [
        call
        for package in SOURCES
        for path in sorted((root / package).rglob("*.py"))
        for call in _traceback_calls(path)
    ]
    assert found == []
