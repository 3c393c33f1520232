"""Run directories: ``$BULKOPS_HOME/runs/<run_id>/{plan.json,journal.sqlite}`` (default ``./.bulkops``).

Directories are created owner-only (0700); every file bulkops writes in them is 0600.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bulkops.errors import JournalError

PLAN_FILE = "plan.json"
JOURNAL_FILE = "journal.sqlite"


def home() -> Path:
    """``$BULKOPS_HOME``, else ``./.bulkops``."""
    env = os.environ.get("BULKOPS_HOME")
    return Path(env) if env else Path.cwd() / ".bulkops"


def runs_dir() -> Path:
    return home() / "runs"


def new_id(now: datetime | None = None) -> str:
    """A sortable, unique id: ``20261127T093012Z-3fa9c1``."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) owner-only."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write ``data`` (bytes, or pieces of it) to ``path`` with mode 0600 from the first byte on
    (atomic replace)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                fh.writelines(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    path.chmod(0o600)


def run_dir(run_id: str) -> Path:
    """The directory of an existing run; ``run_id`` may also be a path to it."""
    candidate = Path(run_id)
    if candidate.is_dir() and (candidate / JOURNAL_FILE).exists():
        return candidate
    if "/" in run_id or run_id in {"", ".", ".."}:
        raise JournalError(f"no run at {run_id!r}")
    path = runs_dir() / run_id
    if not (path / JOURNAL_FILE).exists():
        raise JournalError(f"no run {run_id!r} in {runs_dir()} (see `bulkops runs`)")
    return path


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    state: str
    job_name: str
    action: str
    created_at: str
    updated_at: str
    total: int
    counts: dict[str, int]


def start_run(plan_bytes: bytes | Iterable[bytes], *, run_id: str | None = None) -> Path:
    """Create ``runs/<run_id>/`` (0700) holding a copy of the plan (0600); returns the directory."""
    rid = run_id or new_id()
    private_dir(home())
    private_dir(runs_dir())
    path = private_dir(runs_dir() / rid)
    if (path / JOURNAL_FILE).exists():
        raise JournalError(f"run {rid} already exists")
    write_private(path / PLAN_FILE, plan_bytes)
    return path
