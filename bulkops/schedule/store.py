"""The slot store: ``$BULKOPS_HOME/schedule/slots.sqlite``, one row per (job, slot) ever decided.

The primary key ``(job, slot)`` is the run key: a slot is inserted once, by whichever process decides it
first, and every later attempt to claim it sees the row and stands back — across threads, processes
and CronJob pods alike, as long as they share ``BULKOPS_HOME`` on a filesystem with working POSIX
locks (a local disk or a ReadWriteOnce volume; not NFS without locking). Decisions are made inside
``BEGIN IMMEDIATE`` transactions, so two schedulers never decide the same slot differently.

Tables:
    slot    job, slot, state, reason (a skip reason or ''), detail (the human sentence), run_id, owner,
            planned / active (plan items / items to send), requests, throttled, counts (JSON), times
    cursor  per job: the newest slot already decided; slots after it are still to be looked at
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from bulkops.errors import JournalError
from bulkops.journal.runs import home, private_dir
from bulkops.schedule.slots import Skip, parse_slot, slot_key

STORE_DIR = "schedule"
STORE_FILE = "slots.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS slot (
    job TEXT NOT NULL, slot TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '', run_id TEXT NOT NULL DEFAULT '', owner TEXT NOT NULL DEFAULT '',
    planned INTEGER, active INTEGER, requests INTEGER NOT NULL DEFAULT 0,
    throttled INTEGER NOT NULL DEFAULT 0, counts TEXT NOT NULL DEFAULT '{}',
    decided_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    PRIMARY KEY (job, slot)
);
CREATE TABLE IF NOT EXISTS cursor (job TEXT PRIMARY KEY, slot TEXT NOT NULL, updated_at TEXT NOT NULL);
"""
COLUMNS = ("job, slot, state, reason, detail, run_id, owner, planned, active, requests, throttled, counts, "
           "decided_at, started_at, finished_at")


class SlotState(StrEnum):
    QUEUED = "queued"  # decided to run; not started yet
    RUNNING = "running"
    DONE = "done"  # every target applied or already as wanted
    SOME_FAILED = "some_failed"  # done, but some targets failed or drifted
    NOTHING_TO_DO = "nothing_to_do"  # the plan had only no-ops; no run was started
    SKIPPED = "skipped"  # never run: see reason
    NEEDS_APPROVAL = "needs_approval"  # the plan grew past grow_limit; not applied
    REFUSED = "refused"  # a guard refused it (expect, allowlist, a deletion without expect.max, ...)
    FAILED = "failed"  # planning failed or the API said no before anything was applied
    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM: `bulkops resume RUN` continues it
    STOPPED = "stopped"  # the run stopped (a long Retry-After, a revoked token): resumable


# a slot in one of these states had a plan that passed every guard: its size is the next run's baseline
PASSED = frozenset({SlotState.DONE, SlotState.SOME_FAILED, SlotState.NOTHING_TO_DO, SlotState.INTERRUPTED,
                    SlotState.STOPPED})
OPEN = frozenset({SlotState.QUEUED, SlotState.RUNNING})


@dataclass(frozen=True, slots=True)
class SlotRecord:
    job: str
    slot: str
    state: SlotState
    reason: str = ""
    detail: str = ""
    run_id: str = ""
    owner: str = ""
    planned: int | None = None
    active: int | None = None
    requests: int = 0
    throttled: int = 0
    counts: Mapping[str, int] = field(default_factory=dict)
    decided_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (dict(v) if k == "counts" else v) for k, v in
                ((name, getattr(self, name)) for name in COLUMNS.split(", "))}


def new_owner() -> str:
    """Who decided a slot: host, process id and a random tag (process ids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _stamp(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _record(row: tuple[Any, ...]) -> SlotRecord:
    return SlotRecord(row[0], row[1], SlotState(row[2]), row[3], row[4], row[5], row[6], row[7], row[8],
                      row[9], row[10], orjson.loads(row[11]), row[12], row[13], row[14])


class SlotStore:
    """One connection to the slot store. Every write is its own transaction, or part of ``locked()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._depth = 0
        try:
            private_dir(path.parent)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # 0600 before SQLite writes a byte
            self._conn = sqlite3.connect(path, isolation_level=None, timeout=60.0, check_same_thread=False)
            for attempt in range(100):  # switching a new file to WAL is refused at once, not waited for,
                try:                    # while another process does the same: retry for up to 10 s
                    self._conn.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 99:
                        raise
                    time.sleep(0.1)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the slot store {path}: {exc}") from exc

    @classmethod
    def open(cls, base: Path | None = None) -> SlotStore:
        """The store under ``base`` (default ``$BULKOPS_HOME``)."""
        return cls((base or home()) / STORE_DIR / STORE_FILE)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction: no other process writes the store until it ends."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise JournalError(f"cannot write the slot store {self.path}: {exc}") from exc
        self._depth = 1
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")
        finally:
            self._depth = 0

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        try:
            with self.locked():
                return self._conn.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise JournalError(f"cannot write the slot store {self.path}: {exc}") from exc

    # --- cursors -----------------------------------------------------------------------------------

    def cursor(self, job: str) -> datetime | None:
        row = self._conn.execute("SELECT slot FROM cursor WHERE job=?", (job,)).fetchone()
        return parse_slot(row[0]) if row else None

    def set_cursor(self, job: str, slot: datetime, now: datetime) -> None:
        """Move the job's cursor forward to ``slot`` (never back)."""
        self._write("INSERT INTO cursor (job, slot, updated_at) VALUES (?,?,?) ON CONFLICT(job) DO UPDATE "
                    "SET slot=MAX(slot, excluded.slot), updated_at=excluded.updated_at",
                    (job, slot_key(slot), _stamp(now)))

    # --- deciding slots ----------------------------------------------------------------------------

    def record_skip(self, job: str, skip: Skip, now: datetime) -> bool:
        """Journal a skipped slot; False if the slot was decided already (by this or another process)."""
        return self._write(
            "INSERT OR IGNORE INTO slot (job, slot, state, reason, detail, decided_at, finished_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (job, slot_key(skip.slot), SlotState.SKIPPED.value, skip.reason.value, skip.detail,
             _stamp(now), _stamp(now))) == 1

    def claim(self, job: str, slot: datetime, owner: str, now: datetime, *, approve: bool = False) -> bool:
        """Take the slot for ``owner`` (state queued); False if it is taken. With ``approve`` a slot that
        is waiting for approval is taken again."""
        with self.locked():
            inserted = self._write(
                "INSERT OR IGNORE INTO slot (job, slot, state, owner, decided_at) VALUES (?,?,?,?,?)",
                (job, slot_key(slot), SlotState.QUEUED.value, owner, _stamp(now)))
            if inserted == 1:
                return True
            if not approve:
                return False
            return self._write(
                "UPDATE slot SET state=?, owner=?, reason='', detail='', decided_at=?, finished_at=NULL "
                "WHERE job=? AND slot=? AND state=?",
                (SlotState.QUEUED.value, owner, _stamp(now), job, slot_key(slot),
                 SlotState.NEEDS_APPROVAL.value)) == 1

    def start(self, job: str, slot: datetime, now: datetime) -> None:
        self._write("UPDATE slot SET state=?, started_at=? WHERE job=? AND slot=?",
                    (SlotState.RUNNING.value, _stamp(now), job, slot_key(slot)))

    def set_run(self, job: str, slot: datetime, run_id: str, planned: int, active: int) -> None:
        self._write("UPDATE slot SET run_id=?, planned=?, active=? WHERE job=? AND slot=?",
                    (run_id, planned, active, job, slot_key(slot)))

    def finish(self, job: str, slot: datetime, state: SlotState, now: datetime, *, reason: str = "",
               detail: str = "", run_id: str = "", planned: int | None = None, active: int | None = None,
               requests: int = 0, throttled: int = 0, counts: Mapping[str, int] | None = None) -> None:
        self._write(
            "UPDATE slot SET state=?, reason=?, detail=?, run_id=COALESCE(NULLIF(?, ''), run_id), "
            "planned=COALESCE(?, planned), active=COALESCE(?, active), requests=?, throttled=?, counts=?, "
            "finished_at=? WHERE job=? AND slot=?",
            (state.value, reason, detail, run_id, planned, active, requests, throttled,
             orjson.dumps(dict(counts or {})).decode(), _stamp(now), job, slot_key(slot)))

    # --- reading -----------------------------------------------------------------------------------

    def _rows(self, where: str, params: tuple[Any, ...], tail: str = "") -> list[SlotRecord]:
        sql = f"SELECT {COLUMNS} FROM slot WHERE {where} {tail}"
        return [_record(r) for r in self._conn.execute(sql, params).fetchall()]

    def get(self, job: str, slot: datetime) -> SlotRecord | None:
        found = self._rows("job=? AND slot=?", (job, slot_key(slot)))
        return found[0] if found else None

    def last(self, job: str) -> SlotRecord | None:
        """The job's newest slot that was not skipped."""
        found = self._rows("job=? AND state!=?", (job, SlotState.SKIPPED.value), "ORDER BY slot DESC LIMIT 1")
        return found[0] if found else None

    def running(self, job: str) -> SlotRecord | None:
        found = self._rows("job=? AND state=?", (job, SlotState.RUNNING.value), "ORDER BY slot DESC LIMIT 1")
        return found[0] if found else None

    def baseline(self, job: str) -> SlotRecord | None:
        """The job's newest slot whose plan passed every guard (its ``active`` is the grow_limit base)."""
        marks = ",".join("?" for _ in PASSED)
        found = self._rows(f"job=? AND state IN ({marks}) AND active IS NOT NULL",
                           (job, *sorted(PASSED)), "ORDER BY slot DESC LIMIT 1")
        return found[0] if found else None

    def skipped(self, job: str, limit: int = 20) -> tuple[list[SlotRecord], int]:
        """The job's newest ``limit`` skipped slots and how many there are in all."""
        total = self._conn.execute("SELECT COUNT(*) FROM slot WHERE job=? AND state=?",
                                   (job, SlotState.SKIPPED.value)).fetchone()[0]
        rows = self._rows("job=? AND state=?", (job, SlotState.SKIPPED.value),
                          f"ORDER BY slot DESC LIMIT {limit:d}")
        return rows, int(total)

    def slots(self, job: str) -> list[SlotRecord]:
        """Every decided slot of the job, oldest first."""
        return self._rows("job=?", (job,), "ORDER BY slot")

    def jobs(self) -> list[str]:
        names = {r[0] for r in self._conn.execute("SELECT job FROM slot UNION SELECT job FROM cursor")}
        return sorted(names)
