"""structlog setup: events to stderr, a console renderer on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import TextIO, cast

import structlog

LEVELS = {0: logging.WARNING, 1: logging.INFO}


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is when an event is written, not when logging was set up
    (a caller that swaps stderr, as a test runner does, never leaves events pointing at a closed file)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def setup(verbosity: int = 0, *, stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog. ``verbosity`` 0 → warnings, 1 → info, 2+ → debug."""
    out = stream if stream is not None else sys.stderr
    sink = out if stream is not None else cast(TextIO, _CurrentStderr())
    level = LEVELS.get(verbosity, logging.DEBUG)
    as_json = json if json is not None else not out.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sink),
        cache_logger_on_first_use=False,
    )
