"""Stopping a run from outside the engine (signals, tests, a rollout's stop switch)."""

from __future__ import annotations

import anyio

__all__ = ["RunControl", "leaf"]


class RunControl:
    """Stop requests from outside the engine (signals, tests). Create it inside the event loop."""

    def __init__(self, grace: float = 10.0) -> None:
        self.grace = grace
        self.stop_requested = anyio.Event()
        self.abort_requested = anyio.Event()

    def stop(self) -> None:
        """Stop dispatching; in-flight requests get ``grace`` seconds to finish."""
        self.stop_requested.set()

    def abort(self) -> None:
        """Cancel in-flight requests now (their items stay 'sent' and are read back on resume)."""
        self.stop_requested.set()
        self.abort_requested.set()


def leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-exception groups; the group itself otherwise."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
