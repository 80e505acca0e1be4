"""Structured logging: structlog, JSON lines, snake_case past-tense events, context bound per order.

Configured once by the composition root; filtering happens before any formatting work.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError

from gateway.config.model import LogConfig, LogFormat

Logger = Any  # structlog's bound loggers are dynamically typed


def configure_logging(config: LogConfig, *, cache: bool = True) -> None:
    """`cache=False` only for tests, so structlog.testing.capture_logs sees every logger."""
    level = logging.getLevelName(config.level.value.upper())
    renderer: Any
    factory: Any
    if config.format is LogFormat.JSON:
        # orjson renders to bytes several times faster than json; at info level every order logs.
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        factory = structlog.BytesLoggerFactory(sys.stderr.buffer)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=cache,
    )
    # aiohttp's own loggers go through stdlib logging: errors only, and never an access log.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in server.filters):
        server.addFilter(MalformedRequests())


class MalformedRequests(logging.Filter):
    """A client's malformed HTTP (a request line over 8190 bytes, a broken header) as one warning line.

    aiohttp answers it 400 before any route runs, and logs it at error level with a traceback: noise
    anyone on the network can make, in a format nothing parses. It becomes a structured warning.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        get_logger("gateway.http").warning(
            "http_request_malformed", error=type(error).__name__, status=error.code
        )
        return False


def get_logger(name: str) -> Logger:
    return structlog.get_logger(name)
