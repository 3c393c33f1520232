"""One run per plan: ``$BULKOPS_HOME/plans/<plan_id>.run`` names the run a plan became, and
``<plan_id>.lock`` is held while a process checks for that run, creates it and (from the CLI) applies it.

A second ``bulkops apply`` of the same plan is refused: at once, while the lock is held by another process
("being applied"), or, once the run exists, with that run's id and state ("already applied as run X").
The run is recorded *before* its journal is made; a record whose run has no journal was left by a process
killed in between, before anything was sent, so that run id is used again rather than refusing the plan.
The record lives in the run store, so it covers applies that share a ``BULKOPS_HOME``.
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
from pathlib import Path
from types import TracebackType

from bulkops.errors import GuardError, JournalError
from bulkops.journal.journal import Journal
from bulkops.journal.runs import JOURNAL_FILE, home, private_dir, runs_dir, write_private

PLAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def plans_dir() -> Path:
    return home() / "plans"


class PlanClaim:
    """The lock on one plan id, held from :meth:`take` to :meth:`release` (or the end of a ``with``)."""

    def __init__(self, plan_id: str, fd: int) -> None:
        self.plan_id = plan_id
        self._fd: int | None = fd
        self._record = plans_dir() / f"{plan_id}.run"

    @classmethod
    def take(cls, plan_id: str) -> PlanClaim:
        """Lock ``plan_id``; :class:`GuardError` when another process holds it."""
        if not PLAN_ID.match(plan_id):
            raise GuardError(f"the plan id {plan_id[:100]!r} is not one bulkops makes; make a new plan")
        private_dir(home())
        fd = os.open(private_dir(plans_dir()) / f"{plan_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise GuardError(f"plan {plan_id} is being applied by another bulkops process; "
                             "see `bulkops runs`") from None
        return cls(plan_id, fd)

    def recorded(self) -> str | None:
        """The run id recorded for the plan, if any (its journal may not exist)."""
        try:
            run_id = self._record.read_text().strip()
        except FileNotFoundError:
            return None
        return run_id or None

    def existing_run(self) -> str | None:
        """The plan's run, if it has one with a journal."""
        run_id = self.recorded()
        if run_id is None or "/" in run_id or run_id in {".", ".."}:
            return None
        return run_id if (runs_dir() / run_id / JOURNAL_FILE).exists() else None

    def refuse_if_applied(self) -> None:
        """:class:`GuardError` naming the run when the plan already has one."""
        run_id = self.existing_run()
        if run_id is None:
            return
        try:
            journal = Journal.open(runs_dir() / run_id)
            try:
                state = journal.info().state
            finally:
                journal.close()
        except (JournalError, sqlite3.Error):
            state = "unreadable"  # still the plan's run
        raise GuardError(f"plan {self.plan_id} was already applied as run {run_id} ({state}); "
                         f"plan again or `bulkops resume {run_id}`")

    def record(self, run_id: str) -> None:
        """Record ``run_id`` as the plan's run (before its journal is made)."""
        write_private(self._record, run_id.encode() + b"\n")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PlanClaim:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
