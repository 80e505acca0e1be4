"""Structured logging: structlog, JSON lines, snake_case past-tense events, context bound per order.

Configured once by the composition root; filtering happens before any formatting work.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

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


def get_logger(name: str) -> Logger:
    return structlog.get_logger(name)
