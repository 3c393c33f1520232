"""The run journal: one SQLite file per run, written before every request and after every answer.

Durability: WAL mode with ``synchronous=NORMAL``. Each write is its own transaction, appended to the
WAL and handed to the operating system before the call returns, so a killed process (SIGKILL, a crash,
Ctrl-C) loses nothing. Only a power loss may drop the last few transactions; that is safe here because
every request bulkops sends is idempotent once resolved (a PATCH carries its before-values in the
filter, a DELETE of a gone row is success, a repeated POST meets a 409 that is resolved by reading), and
an item that lost its 'sent' mark or its outcome is read back before anything is sent again. A lost
transaction can therefore cause one extra read, never a wrong outcome. ``synchronous=FULL`` would add an
fsync per item for no gain in correctness.

Tables:
    run      one row: id, state, plan path, api url, job, totals, timestamps, last message
    item     one row per plan item: the plan's values, ``state`` (planned → sent → done), ``outcome``,
             last HTTP ``status``, ``attempts``, ``error``
    attempt  one row per request: method, path and filter (never a token), items it addressed,
             sent_at, status, answered_at, error
    meta     key/value: ``plan_digest``, the digest of the plan the run was created from
"""

from __future__ import annotations

import fcntl
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bulkops.errors import JournalError
from bulkops.journal.rows import (
    DONE,
    PLANNED,
    SENT,
    Attempt,
    JournalItem,
    Outcomes,
    dump,
    item_rows,
    load,
    now_text,
    parts,
)
from bulkops.journal.runs import JOURNAL_FILE, RunInfo, runs_dir
from bulkops.model import ChangeKind, Outcome, Plan, PlanItem, RunState

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, plan_path TEXT NOT NULL, api_url TEXT NOT NULL,
    job_name TEXT NOT NULL, action TEXT NOT NULL, total INTEGER NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, message TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS item (
    idx INTEGER PRIMARY KEY, target_id INTEGER NOT NULL, label TEXT NOT NULL, kind TEXT NOT NULL,
    resource TEXT NOT NULL, row_id INTEGER, before TEXT, after TEXT, key TEXT NOT NULL,
    state TEXT NOT NULL, outcome TEXT, status INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempt (
    id INTEGER PRIMARY KEY AUTOINCREMENT, method TEXT NOT NULL, path TEXT NOT NULL,
    items TEXT NOT NULL, sent_at TEXT NOT NULL, status INTEGER, answered_at TEXT, error TEXT
);
"""

INSERT_RUN = ("INSERT INTO run (id, state, plan_path, api_url, job_name, action, total, created_at, "
              "updated_at) VALUES (?,?,?,?,?,?,?,?,?)")
INSERT_ITEM = ("INSERT INTO item (idx, target_id, label, kind, resource, row_id, before, after, key, state, "
               "outcome, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")
LOCK_FILE = "run.lock"


__all__ = ["DONE", "PLANNED", "SENT", "Attempt", "Journal", "JournalItem", "Outcomes", "list_runs",
           "plan_item"]


class Journal:
    """A run's durable record. Not thread-safe; one writer (the apply loop) at a time."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.run_dir = path.parent
        self.run_id = path.parent.name
        self._lock_fd: int | None = None

    # --- opening ---------------------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from exc
        for suffix in ("", "-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            if side.exists():
                side.chmod(0o600)
        return conn

    @classmethod
    def create(cls, run_dir: Path, plan: Plan, *, plan_path: Path | None = None,
               plan_digest: str = "") -> Journal:
        """A new journal in ``run_dir`` holding every plan item; no-ops are recorded as done.

        It is built under a temporary name and renamed into place once complete, so a process killed
        meanwhile leaves no journal (and sent nothing: requests start after this returns), never a
        journal without its run record or with part of its items."""
        path = Path(run_dir) / JOURNAL_FILE
        if path.exists():
            raise JournalError(f"a journal already exists at {path}")
        now = now_text()
        rows = item_rows(plan, now)  # one at a time, from the plan to the journal
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.executescript(SCHEMA)
                with conn:
                    conn.execute("BEGIN")
                    conn.execute(INSERT_RUN, (
                        path.parent.name, RunState.PLANNED.value, str(plan_path or ""), plan.api_url,
                        plan.job_name, plan.action.type.value, len(plan.items), now, now,
                    ))
                    conn.executemany(INSERT_ITEM, rows)
                    if plan_digest:
                        conn.execute("INSERT INTO meta (key, value) VALUES ('plan_digest', ?)",
                                     (plan_digest,))
            finally:
                conn.close()
            os.replace(tmp, path)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)  # the rename itself survives a power loss
            finally:
                os.close(directory)
        except (OSError, sqlite3.Error) as exc:
            tmp.unlink(missing_ok=True)
            raise JournalError(f"cannot create the journal {path}: {exc}") from exc
        return cls(cls._connect(path), path)

    @classmethod
    def open(cls, run_dir: Path, run_id: str | None = None) -> Journal:
        """Open the journal of an existing run (``run_dir``, or ``run_dir/run_id`` when given)."""
        base = Path(run_dir) / run_id if run_id else Path(run_dir)
        path = base / JOURNAL_FILE
        if not path.exists():
            raise JournalError(f"no journal at {path}")
        return cls(cls._connect(path), path)

    def close(self) -> None:
        self.unlock()
        self._conn.close()

    def lock(self) -> None:
        """Hold the run's lock (``run.lock``) while applying: a second process applying or resuming the
        same run is refused instead of sending the same requests twice."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise JournalError(f"run {self.run_id} is being applied by another bulkops process") from exc
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def in_use(self) -> bool:
        """Whether another process holds the run's lock (it is applying or resuming it now)."""
        if self._lock_fd is not None:
            return False
        path = self.run_dir / LOCK_FILE
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    # --- writing ---------------------------------------------------------------------------------

    def _tx(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                for sql, params in statements:
                    self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot write the journal {self.path}: {exc}") from exc

    def mark_sent(self, indices: Sequence[int], *, method: str, path: str) -> int:
        """Record a request about to be sent for ``indices``; returns the attempt id. Call BEFORE sending."""
        now = now_text()
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                cur = self._conn.execute(
                    "INSERT INTO attempt (method, path, items, sent_at) VALUES (?,?,?,?)",
                    (method, path, dump(list(indices)), now),
                )
                self._conn.executemany(
                    "UPDATE item SET state=?, attempts=attempts+1, updated_at=? WHERE idx=? AND state!=?",
                    [(SENT, now, i, DONE) for i in indices],
                )
        except sqlite3.Error as exc:
            raise JournalError(f"cannot write the journal {self.path}: {exc}") from exc
        attempt_id = cur.lastrowid
        assert attempt_id is not None
        return attempt_id

    def mark_answered(self, attempt_id: int, *, status: int | None, error: str | None = None) -> None:
        """Record the answer (or the failure) of an attempt. Call AFTER it arrived."""
        self._tx([("UPDATE attempt SET status=?, answered_at=?, error=? WHERE id=?",
                   (status, now_text(), error, attempt_id))])

    def record(self, outcomes: Sequence[Outcomes]) -> None:
        """Give items their outcomes, in one transaction."""
        now = now_text()
        self._tx(
            ("UPDATE item SET state=?, outcome=?, status=COALESCE(?, status), error=?, updated_at=? "
             "WHERE idx=?", (DONE, o.outcome.value, o.status, o.error, now, o.index))
            for o in outcomes
        )

    def reset(self, indices: Sequence[int]) -> None:
        """Items read back as not in place after an unanswered request: planned again."""
        now = now_text()
        self._tx(("UPDATE item SET state=?, updated_at=? WHERE idx=? AND state=?", (PLANNED, now, i, SENT))
                 for i in indices)

    def set_state(self, state: RunState, message: str = "") -> None:
        self._tx([("UPDATE run SET state=?, message=?, updated_at=?", (state.value, message, now_text()))])

    # --- reading ---------------------------------------------------------------------------------

    def items(self) -> list[JournalItem]:
        return list(self.iter_items())

    def iter_items(self, indices: Iterable[int] | None = None, *,
                   outcomes: Iterable[Outcome] = ()) -> Iterator[JournalItem]:
        """The items in index order (only those of ``indices``, or with one of ``outcomes``, when given),
        read a few at a time."""
        cols = ("SELECT idx, target_id, label, kind, resource, row_id, before, after, key, state, outcome, "
                "status, attempts, error FROM item")
        wanted_outcomes = [o.value for o in outcomes]
        if indices is not None:
            wanted = sorted(set(indices))
            cursors: Iterable[Iterable[Any]] = (
                self._conn.execute(f"{cols} WHERE idx IN ({','.join('?' * len(part))}) ORDER BY idx", part)
                for part in parts(wanted))
        elif wanted_outcomes:
            marks = ",".join("?" * len(wanted_outcomes))
            cursors = [self._conn.execute(f"{cols} WHERE outcome IN ({marks}) ORDER BY idx", wanted_outcomes)]
        else:
            cursors = [self._conn.execute(f"{cols} ORDER BY idx")]
        for cursor in cursors:
            for r in cursor:
                yield JournalItem(r[0], r[1], r[2], ChangeKind(r[3]), r[4], r[5], load(r[6]), load(r[7]),
                                  load(r[8]), r[9], Outcome(r[10]) if r[10] else None, r[11], r[12], r[13])

    def states(self) -> dict[int, str]:
        """Each item's dispatch state (planned, sent, done) by index: the cheap read of a small journal
        (a run of any size reads :meth:`indices` and :meth:`tally` instead)."""
        return dict(self._conn.execute("SELECT idx, state FROM item ORDER BY idx").fetchall())

    def iter_states(self) -> Iterator[tuple[int, str]]:
        """(index, dispatch state) of every item in index order, read a few at a time."""
        yield from self._conn.execute("SELECT idx, state FROM item ORDER BY idx")

    def left(self) -> int:
        """Items not done (planned or sent)."""
        return int(self._conn.execute("SELECT COUNT(*) FROM item WHERE state != ?", (DONE,)).fetchone()[0])

    def indices(self, *, state: str | None = None, not_state: str | None = None, after: int = -1,
                limit: int = -1) -> list[int]:
        """Item indices above ``after`` in order, at most ``limit`` (-1: all), in (or not in) a state."""
        where: list[str] = ["idx > ?"]
        args: list[Any] = [after]
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if not_state is not None:
            where.append("state != ?")
            args.append(not_state)
        rows = self._conn.execute(f"SELECT idx FROM item WHERE {' AND '.join(where)} ORDER BY idx LIMIT ?",
                                  (*args, limit))
        return [r[0] for r in rows]

    def tally(self) -> dict[str, int]:
        """Items per dispatch state (planned, sent, done)."""
        out = {PLANNED: 0, SENT: 0, DONE: 0}
        out.update(dict(self._conn.execute("SELECT state, COUNT(*) FROM item GROUP BY state").fetchall()))
        return out

    def attempts(self) -> list[Attempt]:
        rows = self._conn.execute(
            "SELECT id, method, path, items, sent_at, status, answered_at, error FROM attempt ORDER BY id"
        ).fetchall()
        return [Attempt(r[0], r[1], r[2], tuple(load(r[3])), r[4], r[5], r[6], r[7]) for r in rows]

    def attempt_count(self) -> int:
        """Requests journaled (every write and create)."""
        return int(self._conn.execute("SELECT COUNT(*) FROM attempt").fetchone()[0])

    def item_attempts(self, index: int) -> int:
        """Requests journaled so far for item ``index``."""
        row = self._conn.execute("SELECT attempts FROM item WHERE idx=?", (index,)).fetchone()
        return int(row[0]) if row else 0

    def item_state(self, index: int) -> str:
        row = self._conn.execute("SELECT state FROM item WHERE idx=?", (index,)).fetchone()
        return str(row[0]) if row else ""

    def state(self) -> RunState:
        row = self._conn.execute("SELECT state FROM run").fetchone()
        return RunState(row[0])

    def counts(self) -> dict[str, int]:
        """Items per outcome; items without one count as not attempted."""
        out = {o.value: 0 for o in Outcome}
        for outcome, n in self._conn.execute("SELECT outcome, COUNT(*) FROM item GROUP BY outcome"):
            out[outcome or Outcome.NOT_ATTEMPTED.value] += n
        return out

    def info(self) -> RunInfo:
        r = self._conn.execute(
            "SELECT id, state, job_name, action, created_at, updated_at, total FROM run"
        ).fetchone()
        if r is None:
            raise JournalError(f"the journal {self.path} has no run record")
        state = r[1]
        if state == RunState.RUNNING.value and not self.in_use():
            state = "crashed"  # running per the journal, but no process holds it: resume it
        return RunInfo(r[0], state, r[2], r[3], r[4], r[5], r[6], self.counts())

    def plan_digest(self) -> str | None:
        """The digest of the plan the run was created from (None: not recorded)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key='plan_digest'").fetchone()
        return str(row[0]) if row else None

    def message(self) -> str:
        row = self._conn.execute("SELECT message FROM run").fetchone()
        return str(row[0]) if row else ""


def plan_item(item: JournalItem) -> PlanItem:
    """The plan item a journal row records."""
    return PlanItem(item.target_id, item.label, item.kind, item.resource, item.row_id, item.before,
                    item.after, item.key)


def list_runs() -> list[RunInfo]:
    """Every run under :func:`runs_dir`, oldest first."""
    base = runs_dir()
    if not base.is_dir():
        return []
    out: list[RunInfo] = []
    for path in sorted(base.iterdir()):
        if not (path / JOURNAL_FILE).exists():
            continue
        try:
            journal = Journal.open(path)
        except JournalError:
            out.append(_unreadable(path.name))
            continue
        try:
            out.append(journal.info())
        except (JournalError, sqlite3.Error):
            out.append(_unreadable(path.name))
        finally:
            journal.close()
    return sorted(out, key=lambda r: (r.created_at, r.run_id))


def _unreadable(run_id: str) -> RunInfo:
    """A run whose journal cannot be read: listed (so that one bad directory does not hide the others)."""
    return RunInfo(run_id, "unreadable", "", "", "", "", 0, {o.value: 0 for o in Outcome})
