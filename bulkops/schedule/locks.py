"""Locks between runs, in this process and in any other sharing ``BULKOPS_HOME``: ``flock`` on files
under ``$BULKOPS_HOME/schedule/locks/`` (each open file is its own lock holder, even in one process).

* The **job lock** is taken without waiting: a job whose previous slot is still running does not start
  a second run; the new slot is journaled as skipped (overlap).
* **Scope locks** serialize jobs whose targets may overlap, waiting for each other. A job holds its
  resource on its API exclusively when it has no fleet (it may touch any row), else that resource
  shared and each of its fleets (targets, and a move's destination) exclusively. All are taken at
  once or none (tried again every :data:`POLL` seconds), so two jobs never deadlock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio

from bulkops.journal.runs import home, private_dir
from bulkops.model import Job

LOCK_DIR = ("schedule", "locks")
POLL = 0.1  # seconds between two tries at a set of scope locks


class JobBusyError(Exception):
    """The job's lock is held: another run of it is in progress."""


class StoppedWaitingError(Exception):
    """A stop was requested while waiting for scope locks; none is held."""


def _path(base: Path | None, name: str) -> Path:
    folder = private_dir((base or home()).joinpath(*LOCK_DIR))
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:48]
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return folder / f"{readable}-{digest}.lock"


def _try(path: Path, exclusive: bool) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@contextmanager
def job_lock(job: str, base: Path | None = None) -> Iterator[None]:
    """Hold the job's lock for the block; :class:`JobBusyError` at once if it is held."""
    fd = _try(_path(base, f"job:{job}"), exclusive=True)
    if fd is None:
        raise JobBusyError(job)
    try:
        yield
    finally:
        os.close(fd)


def job_running(job: str, base: Path | None = None) -> bool:
    """Whether some process holds the job's lock now."""
    fd = _try(_path(base, f"job:{job}"), exclusive=True)
    if fd is None:
        return True
    os.close(fd)
    return False


def scopes(job: Job, api_url: str) -> list[tuple[str, bool]]:
    """The scope locks a run of ``job`` holds: ``(name, exclusive)``."""
    root = f"scope:{api_url.rstrip('/')}|{job.target.resource}"
    if not job.target.fleets:
        return [(root, True)]
    fleets = set(job.target.fleets) | ({job.action.to_fleet} if job.action.to_fleet else set())
    return [(root, False)] + [(f"{root}|{fleet}", True) for fleet in sorted(fleets)]


@asynccontextmanager
async def hold_scopes(keys: list[tuple[str, bool]], base: Path | None = None,
                      on_wait: Callable[[], None] | None = None,
                      stop: anyio.Event | None = None) -> AsyncIterator[None]:
    """Hold every scope lock in ``keys`` for the block, waiting until all are free at once;
    :class:`StoppedWaitingError` if ``stop`` is set before they are."""
    paths = [(_path(base, name), exclusive) for name, exclusive in sorted(keys)]
    waited = False
    while True:
        if stop is not None and stop.is_set():
            raise StoppedWaitingError
        held: list[int] = []
        for path, exclusive in paths:
            fd = _try(path, exclusive)
            if fd is None:
                break
            held.append(fd)
        if len(held) == len(paths):
            break
        for fd in held:
            os.close(fd)
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        await anyio.sleep(POLL)
    try:
        yield
    finally:
        for fd in held:
            os.close(fd)
