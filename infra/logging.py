"""structlog configuration: JSON lines (orjson) on stderr, correlation ids from contextvars.

Standard-library loggers (uvicorn, eventsourcing, kafka-python) go through the same processors,
so every line a process writes is one JSON object.

API keys and personal data are not logged: nothing logs request paths, queries, headers or
bodies. As a second line, every rendered value (exception texts included) is scrubbed of what
still looks like a secret or personal data (:func:`scrub`): API tokens, e-mail addresses, and
the row values PostgreSQL puts into its error details. Libraries that dump the bytes they send
and receive at DEBUG (:data:`WIRE_LOGGERS`) stay at INFO.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

# (pattern, replacement): an API token keeps its public key id; an e-mail its domain; libpq's
# "Key (email)=(ada@example.com)" and "Failing row contains (…)" their column names only.
SCRUBBED = (
    (re.compile(r"\b(clt_[0-9a-f]{12}_)[A-Za-z0-9_\-]+"), r"\1***"),
    (re.compile(r"(?i)\b(bearer\s+)\S+"), r"\1***"),
    (re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@([\w-]+(?:\.[\w-]+)+)"), r"***@\1"),
    (re.compile(r"(Key \([^)]*\))=\((?:[^()]|\([^()]*\))*\)"), r"\1=(***)"),
    (re.compile(r"(Failing row contains )\((?:[^()]|\([^()]*\))*\)"), r"\1(***)"),
)


# Libraries whose DEBUG lines dump protocol bytes (kafka-python: every request and response,
# records included): never below INFO, whatever CLIENTELE_LOG_LEVEL says.
WIRE_LOGGERS = ("kafka",)

_configured: dict[str, Any] = {}  # this process's configure_logging arguments, once called
# Each logger is bound to the configuration once, on first use (structlog's
# ``cache_logger_on_first_use``), saving the lookup on every line. A process that configures
# logging again later and expects its loggers to follow (the test suite: CLI commands run
# in-process, then ``structlog.testing.capture_logs``) turns this off first.
CACHE_LOGGERS = True


def scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Processor: the strings in ``event`` (nested in lists and dicts, the rendered exception
    too) with the :data:`SCRUBBED` patterns replaced; other values kept as they are."""
    for name, value in event.items():
        event[name] = _scrubbed(value)
    return event


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        for pattern, replacement in SCRUBBED:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    if isinstance(value, BaseException):  # rendered as its text: scrub that
        return _scrubbed(str(value))
    return value


def exception_text(error: BaseException) -> str:
    """``error``'s traceback as plain text, as :func:`configure_logging` logs ``exc_info``
    (``exception``), whatever the process's configuration: never the frames' local variables.
    structlog's default (a process that did not configure logging: the tests, an embedding
    app) renders them in a rich traceback; they may hold personal data, and in the API it took
    16-25 s per error, on the event loop, where every other request waited."""
    return "".join(traceback.format_exception(error))


def _orjson_text(value: object, **_: object) -> str:
    return orjson.dumps(value, default=str).decode()


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written: a progress bar that redirects it
    (rich) then prints log lines above the bar instead of through it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Configure structlog and the stdlib root logger once per process (and, through
    :func:`for_spawned_process`, the processes it spawns)."""
    _configured.update(level=level, json=json)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_orjson_text)
        if json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=CACHE_LOGGERS,
    )
    handler = logging.StreamHandler(_Stderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                scrub,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in WIRE_LOGGERS:  # their DEBUG lines are the bytes on the wire: message contents
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))


def for_spawned_process() -> functools.partial[None]:
    """This process's logging configuration as a picklable callable, for a process it spawns
    to call first (a pool's ``initializer``, or a ``Process`` target's first step).

    A "spawn" child is a fresh interpreter: unconfigured, structlog prints plain text to
    stdout, past :func:`scrub`, into whatever reads this process's stdout (``clientele bench
    --json``'s JSON). Before this process configured logging, the child gets the defaults."""
    return functools.partial(configure_logging, **_configured)
