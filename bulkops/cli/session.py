"""What the running command has done so far, for the exit code of an interrupt.

Ctrl-C before any request was sent ends the command with 130 (128 + SIGINT, as a shell reports a
process stopped by it); after a request was sent, with 5 (interrupted), naming the run to resume when
one was started. Standard library only: it must be importable while the program is still loading.
"""

from __future__ import annotations

import time
from typing import Protocol

BEFORE_ANY_REQUEST = 130
AFTER_REQUESTS = 5


class _Counts(Protocol):
    @property
    def requests(self) -> int: ...


class _Client(Protocol):
    def statistics(self) -> _Counts: ...


_clients: list[_Client] = []
_run_id: list[str] = []
_started = [time.monotonic()]


def begin() -> None:
    """A new command starts (the CLI may run several in one process, as the tests do)."""
    _clients.clear()
    _run_id.clear()
    _started[:] = [time.monotonic()]


def elapsed() -> float:
    """Seconds since the command started."""
    return time.monotonic() - _started[0]


def add_client(client: _Client) -> None:
    _clients.append(client)


def started_run(run_id: str) -> None:
    _run_id[:] = [run_id]


def requests_sent() -> int:
    return sum(c.statistics().requests for c in _clients)


def interrupted() -> int:
    """Say what an interrupt left behind; the exit code."""
    from bulkops.cli import output  # noqa: PLC0415 - stdlib only; kept out of the first import

    sent = requests_sent()
    if not sent:
        output.note("bulkops.cli.interrupted", "interrupted before any request was sent", requests=0,
                    exit_code=BEFORE_ANY_REQUEST)
        return BEFORE_ANY_REQUEST
    if _run_id:
        output.note("bulkops.cli.interrupted",
                    f"interrupted after {sent} requests; continue with `bulkops resume {_run_id[0]}`",
                    requests=sent, run_id=_run_id[0], exit_code=AFTER_REQUESTS)
    else:
        output.note("bulkops.cli.interrupted",
                    f"interrupted after {sent} requests; no run was started, nothing was changed",
                    requests=sent, exit_code=AFTER_REQUESTS)
    return AFTER_REQUESTS
