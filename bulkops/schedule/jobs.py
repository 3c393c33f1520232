"""The job directory the scheduler watches: ``DIR/*.toml``, read again whenever a file changes.

:meth:`JobDir.scan` notices new, changed and removed files (by modification time, size and content
hash) and reads each new or changed one with the job loader. A file that does not validate is reported
once per version (``bulkops.schedule.job.invalid``) and left out; the other jobs go on. Two files with
the same job ``name`` cannot both be scheduled — the name is half of the run key — so the second (in
path order) is reported as invalid.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from bulkops.errors import BulkopsError
from bulkops.job.load import read_job
from bulkops.model import Job

log = structlog.get_logger("bulkops.schedule")


@dataclass(frozen=True, slots=True)
class JobFile:
    path: Path
    job: Job | None  # None when the file does not validate
    error: str = ""
    stamp: tuple[int, int] = (0, 0)  # mtime_ns, size
    digest: str = ""

    @property
    def scheduled(self) -> bool:
        return self.job is not None and self.job.schedule is not None


def read_job_file(path: Path) -> JobFile:
    try:
        stat = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        return JobFile(path, None, f"{path}: cannot read the job file: {exc.strerror or exc}")
    stamp, digest = (stat.st_mtime_ns, stat.st_size), hashlib.sha256(data).hexdigest()
    try:
        job = read_job(path).job
    except BulkopsError as exc:
        return JobFile(path, None, str(exc), stamp, digest)
    return JobFile(path, job, "", stamp, digest)


class JobDir:
    """``quiet``: keep the job events to oneself (``--list`` and ``--status`` print the problems)."""

    def __init__(self, directory: Path, *, quiet: bool = False) -> None:
        self.directory = directory
        self.quiet = quiet
        self.files: dict[Path, JobFile] = {}
        self._reported: set[Path] = set()

    def _paths(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.glob("*.toml") if p.is_file())
        except OSError:
            return []

    def scan(self) -> bool:
        """Read new and changed files, forget removed ones; True if anything changed."""
        changed = False
        seen = set()
        for path in self._paths():
            seen.add(path)
            old = self.files.get(path)
            try:
                stat = path.stat()
            except OSError:
                continue
            if old is not None and old.stamp == (stat.st_mtime_ns, stat.st_size):
                continue
            new = read_job_file(path)
            if old is not None and old.digest == new.digest and new.digest:
                self.files[path] = replace(old, stamp=new.stamp)
                continue
            self.files[path] = new
            changed = True
            if not self.quiet:
                self._report(old, new)
        for path in sorted(set(self.files) - seen):
            old = self.files.pop(path)
            changed = True
            if old.scheduled and not self.quiet:
                assert old.job is not None
                log.info("bulkops.schedule.job.removed", job=old.job.name, path=str(path))
        if changed:
            self._check_names()
        return changed

    def _report(self, old: JobFile | None, new: JobFile) -> None:
        if new.job is None:
            log.error("bulkops.schedule.job.invalid", path=str(new.path), error=new.error)
            return
        if new.job.schedule is None:
            log.info("bulkops.schedule.job.unscheduled", job=new.job.name, path=str(new.path))
            return
        event = "bulkops.schedule.job.changed" if old is not None and old.job is not None else \
            "bulkops.schedule.job.loaded"
        s = new.job.schedule
        log.info(event, job=new.job.name, path=str(new.path), cron=s.cron, timezone=s.timezone,
                 missed=s.missed.value)

    def _duplicates(self) -> dict[Path, str]:
        """Files whose scheduled job reuses the name of a file before them (in path order)."""
        first: dict[str, Path] = {}
        out: dict[Path, str] = {}
        for path in sorted(self.files):
            job = self.files[path].job
            if job is None or job.schedule is None:
                continue
            if job.name in first:
                out[path] = (f"{path}: job name {job.name!r} is used by {first[job.name]} too: each "
                             "scheduled job needs its own name (the name is half of the run key)")
            else:
                first[job.name] = path
        return out

    def _check_names(self) -> None:
        now = self._duplicates()
        for path, error in now.items():
            if path not in self._reported and not self.quiet:
                log.error("bulkops.schedule.job.invalid", path=str(path), error=error)
        self._reported = set(now)

    def scheduled(self) -> dict[str, Job]:
        """The valid jobs that have a schedule, by name."""
        dup = self._duplicates()
        return {f.job.name: f.job for p, f in sorted(self.files.items())
                if f.job is not None and f.job.schedule is not None and p not in dup}

    def invalid(self) -> list[JobFile]:
        """Files that do not validate, and scheduled jobs whose name another file already uses."""
        dup = self._duplicates()
        return [replace(f, job=None, error=dup[p]) if p in dup else f for p, f in sorted(self.files.items())
                if f.job is None or p in dup]
