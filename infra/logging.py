"""structlog configuration: JSON lines (orjson) with correlation ids bound per request/message."""

from __future__ import annotations

import logging
import sys

import orjson
import structlog


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Configure structlog once per process; stdlib logs go through the same pipeline."""
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor
    if json:
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        factory: structlog.types.WrappedLogger = structlog.BytesLoggerFactory(sys.stderr.buffer)
    else:
        renderer = structlog.dev.ConsoleRenderer()
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(name)s %(message)s")
