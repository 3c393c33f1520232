"""structlog setup: events to stderr, a console renderer on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

LEVELS = {0: logging.WARNING, 1: logging.INFO}


def setup(verbosity: int = 0, *, stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog. ``verbosity`` 0 → warnings, 1 → info, 2+ → debug."""
    out = stream if stream is not None else sys.stderr
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
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
