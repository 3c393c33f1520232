"""Where the command's output goes: documents on stdout, messages on stderr.

stdout carries exactly one thing per command — the preview or the report as text, or with ``--json``
one JSON document, or the CSV/plan written to ``-``. stderr carries messages: on a terminal each is
human text (``bulkops: …``, ``bulkops: error: …``); otherwise every line is a JSON object with
``timestamp``, ``level``, ``event`` and ``message``, the same shape as the log events, so a pipe never
sees the two mixed. ``-`` as a file name means stdout (:func:`write_file`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bulkops.journal.output import write_output

STDOUT = "-"


def terminal() -> bool:
    """Whether messages go to a person (stderr is a terminal) rather than to a program."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream: treat as a program
        return False


def stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def json_line(level: str, event: str, fields: dict[str, Any]) -> str:
    return json.dumps({"timestamp": stamp(), "level": level, "event": event, **fields}, default=str,
                      ensure_ascii=False)


def _emit(level: str, event: str, message: str, fields: dict[str, Any]) -> None:
    if terminal():
        prefix = "error: " if level == "error" else ""
        line = f"bulkops: {prefix}{message}"
    else:
        line = json_line(level, event, {"message": message, **fields})
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def note(event: str, message: str, **fields: Any) -> None:
    """A message for whoever runs the command (``event`` is its stable name off a terminal)."""
    _emit("info", event, message, fields)


def warn(event: str, message: str, **fields: Any) -> None:
    _emit("warning", event, message, fields)


def error(message: str, *, exit_code: int, **fields: Any) -> None:
    _emit("error", "bulkops.cli.error", message, {"exit_code": exit_code, **fields})


def event(name: str, **fields: Any) -> None:
    """A machine event off a terminal (progress, say); nothing on a terminal."""
    if not terminal():
        sys.stderr.write(json_line("info", name, fields) + "\n")
        sys.stderr.flush()


def stderr_text(text: str) -> None:
    """Human text on stderr (only ever called on a terminal)."""
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def out(text: str) -> None:
    """Text on stdout, ending in a newline."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def write_file(path: str | Path, data: bytes | Iterable[bytes]) -> str:
    """Write ``data`` to ``path`` (owner-only, atomic: ``write_private``), or to stdout for ``-``;
    returns how the destination is named in messages."""
    if str(path) == STDOUT:
        sys.stdout.flush()
        buffer = sys.stdout.buffer
        for chunk in [data] if isinstance(data, bytes) else data:
            buffer.write(chunk)
        buffer.flush()
        return "stdout"
    write_output(path, data)  # a symlink written through, a device or FIFO in place, a file atomically
    return str(path)
