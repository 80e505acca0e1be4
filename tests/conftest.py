"""Test-wide settings: structured logs to stderr at warning level, so stdout stays the program's own."""

from __future__ import annotations

from gateway.config.model import LogConfig, LogFormat, LogLevel
from gateway.logs import configure_logging

configure_logging(LogConfig(level=LogLevel.WARNING, format=LogFormat.CONSOLE), cache=False)
