"""Logging: the library is silent until its caller configures logging; the CLI renders events.

Library modules take their logger from :func:`get_logger`. An event goes to structlog when the caller
has configured structlog (``structlog.configure``), otherwise to the standard library logger of the
same name (``bulkops.plan``, ``bulkops.apply``, …), which has a ``NullHandler``: nothing is printed
unless the caller sets up ``logging``. Either way an event carries the structlog context variables
bound around it (inside a run: ``run_id`` and ``job``).

:func:`setup` is the CLI's configuration: events to stderr, a console renderer on a terminal and JSON
lines otherwise, context variables merged into every event.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

import structlog

__all__ = ["LEVELS", "get_logger", "setup"]

LEVELS = {0: logging.WARNING, 1: logging.INFO}
_METHODS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}

logging.getLogger("bulkops").addHandler(logging.NullHandler())


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is when an event is written, not when logging was set up
    (a caller that swaps stderr, as a test runner does, never leaves events pointing at a closed file)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _plain(value: Any) -> str:
    text = str(value)
    return repr(text) if (" " in text or not text) else text


class LibraryLogger:
    """A logger for library code: structlog once the caller configured it, else stdlib ``logging``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            getattr(structlog.get_logger(self.name), _METHODS[level])(event, **fields)
            return
        std = logging.getLogger(self.name)
        if not std.isEnabledFor(level):
            return
        merged = {**structlog.contextvars.get_contextvars(), **fields}
        std.log(level, "%s", " ".join([event, *(f"{k}={_plain(v)}" for k, v in merged.items())]))

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error event with the exception being handled (its traceback goes where the caller's
        logging sends tracebacks)."""
        if structlog.is_configured():
            structlog.get_logger(self.name).exception(event, **fields)
            return
        std = logging.getLogger(self.name)
        if std.isEnabledFor(logging.ERROR):
            merged = {**structlog.contextvars.get_contextvars(), **fields}
            text = " ".join([event, *(f"{k}={_plain(v)}" for k, v in merged.items())])
            std.error("%s", text, exc_info=True)


def get_logger(name: str) -> LibraryLogger:
    """The logger library modules use (``log = get_logger("bulkops.plan")``)."""
    return LibraryLogger(name)


def setup(verbosity: int = 0, *, stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog for the CLI. ``verbosity`` 0 → warnings, 1 → info, 2+ → debug."""
    out = stream if stream is not None else sys.stderr
    sink = out if stream is not None else cast(TextIO, _CurrentStderr())
    level = LEVELS.get(verbosity, logging.DEBUG)
    as_json = json if json is not None else not out.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sink),
        cache_logger_on_first_use=False,
    )
