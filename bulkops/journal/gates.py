"""A rollout's durable state, in its own tables of the run's journal file (created if missing).

Tables (next to ``run``, ``item`` and ``attempt``):
    rollout         one row: the stage the rollout is at, its phase (writing → waiting → gating →
                    approval …), since when, the last stage approved, the abort rule that tripped, the
                    run that undid it
    rollout_stage   one row per stage: targets, started, written, gate started, ended, verdict, gate
                    passed/failed, polls
    rollout_member  the stage of every staged plan item (by item index)
    gate_failure    targets that failed their stage's gate, with the reason
    rollout_event   every decision with its time: each gate verdict (pass, fail, inconclusive), each
                    approval, the abort, a stop by the stop switch, the undo

Every write is one transaction, so a crash at any point leaves a state the rollout resumes from: a
stage whose gate passed is never polled again, a wait continues from when it began.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from bulkops.errors import JournalError
from bulkops.model import Outcome

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollout (
    id INTEGER PRIMARY KEY CHECK (id = 1), stages INTEGER NOT NULL, stage INTEGER NOT NULL,
    phase TEXT NOT NULL, since TEXT NOT NULL, approved INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '', abort_rule TEXT, abort_at TEXT, undo_run TEXT
);
CREATE TABLE IF NOT EXISTS rollout_stage (
    stage INTEGER PRIMARY KEY, targets INTEGER NOT NULL, started_at TEXT, written_at TEXT,
    gate_started_at TEXT, ended_at TEXT, verdict TEXT, passed INTEGER, failed INTEGER,
    polls INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rollout_member (idx INTEGER PRIMARY KEY, stage INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS gate_failure (
    idx INTEGER PRIMARY KEY, stage INTEGER NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_event (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, stage INTEGER NOT NULL, kind TEXT NOT NULL,
    verdict TEXT, passed INTEGER, failed INTEGER, pending INTEGER, detail TEXT NOT NULL DEFAULT ''
);
"""
ATTEMPTED = (Outcome.APPLIED.value, Outcome.FAILED.value, Outcome.DRIFTED.value, Outcome.NOOP.value)


class Phase(StrEnum):
    WRITING = "writing"  # the stage's writes are going out (or are about to)
    WAITING = "waiting"  # settle time after the writes
    GATING = "gating"  # polling the gate
    APPROVAL = "approval"  # the stage passed; waiting for `bulkops approve`
    UNDOING = "undoing"  # aborted with on_abort = "undo": the undo run is applying
    ABORTED = "aborted"
    DONE = "done"


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # the API could not be read: the rollout pauses, never promotes


class EventKind(StrEnum):
    GATE = "gate"
    APPROVAL = "approval"
    ABORT = "abort"
    STOP = "stop"
    UNDO = "undo"


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class RolloutState:
    stages: int
    stage: int
    phase: Phase
    since: str
    approved: int  # the last stage approved by `bulkops approve`
    message: str
    abort_rule: str | None
    abort_at: str | None
    undo_run: str | None


@dataclass(frozen=True, slots=True)
class StageRecord:
    stage: int
    targets: int
    started_at: str | None
    written_at: str | None
    gate_started_at: str | None
    ended_at: str | None
    verdict: Verdict | None
    passed: int | None
    failed: int | None
    polls: int


@dataclass(frozen=True, slots=True)
class Event:
    at: str
    stage: int
    kind: EventKind
    verdict: Verdict | None
    passed: int | None
    failed: int | None
    pending: int | None
    detail: str


class GateStore:
    """The rollout tables of one journal file; one writer (the rollout loop) at a time."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> GateStore:
        """The store in the journal at ``path``, its tables created if missing."""
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
            conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the rollout tables of {path}: {exc}") from exc
        return cls(conn, path)

    @classmethod
    def existing(cls, path: Path) -> GateStore | None:
        """The store if the journal at ``path`` holds a rollout, else None (no table is created)."""
        if not Path(path).is_file():
            return None
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
        except sqlite3.Error:
            return None
        try:
            found = conn.execute("SELECT name FROM sqlite_master WHERE name = 'rollout'").fetchone()
            if found is None or conn.execute("SELECT 1 FROM rollout").fetchone() is None:
                conn.close()
                return None
        except sqlite3.Error:
            conn.close()
            return None
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    # --- writing ---------------------------------------------------------------------------------

    def _tx(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                for sql, params in statements:
                    self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot write the rollout tables of {self.path}: {exc}") from exc

    def init(self, members: Mapping[int, int], at: datetime) -> bool:
        """Record the stage of every staged item (index → stage) once; False if already recorded."""
        if self._conn.execute("SELECT 1 FROM rollout").fetchone() is not None:
            return False
        sizes: dict[int, int] = {}
        for stage in members.values():
            sizes[stage] = sizes.get(stage, 0) + 1
        now = stamp(at)
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute("INSERT INTO rollout (id, stages, stage, phase, since) VALUES (1,?,?,?,?)",
                                   (len(sizes), min(sizes, default=0), Phase.WRITING.value, now))
                self._conn.executemany("INSERT INTO rollout_stage (stage, targets) VALUES (?,?)",
                                       sorted(sizes.items()))
                self._conn.executemany("INSERT INTO rollout_member (idx, stage) VALUES (?,?)",
                                       sorted(members.items()))
        except sqlite3.Error as exc:
            raise JournalError(f"cannot write the rollout tables of {self.path}: {exc}") from exc
        return True

    def set_phase(self, stage: int, phase: Phase, at: datetime, message: str = "") -> None:
        self._tx([("UPDATE rollout SET stage=?, phase=?, since=?, message=?",
                   (stage, phase.value, stamp(at), message))])

    def stage_started(self, stage: int, at: datetime) -> None:
        self._tx([("UPDATE rollout_stage SET started_at=COALESCE(started_at, ?) WHERE stage=?",
                   (stamp(at), stage)),
                  ("UPDATE rollout SET stage=?, phase=?, since=?", (stage, Phase.WRITING.value, stamp(at)))])

    def stage_written(self, stage: int, at: datetime) -> None:
        self._tx([("UPDATE rollout_stage SET written_at=? WHERE stage=?", (stamp(at), stage)),
                  ("UPDATE rollout SET phase=?, since=?", (Phase.WAITING.value, stamp(at)))])

    def gate_started(self, stage: int, at: datetime) -> None:
        self._tx([("UPDATE rollout_stage SET gate_started_at=? WHERE stage=?", (stamp(at), stage)),
                  ("UPDATE rollout SET phase=?, since=?", (Phase.GATING.value, stamp(at)))])

    def polled(self, stage: int) -> None:
        self._tx([("UPDATE rollout_stage SET polls=polls+1 WHERE stage=?", (stage,))])

    def decide(self, stage: int, verdict: Verdict, at: datetime, *, passed: int, failed: int, pending: int,
               detail: str = "", failures: Mapping[int, str] | None = None) -> None:
        """Record a gate verdict; pass and fail also end the stage and name the targets that failed."""
        now = stamp(at)
        statements: list[tuple[str, Sequence[Any]]] = [(
            "INSERT INTO rollout_event (at, stage, kind, verdict, passed, failed, pending, detail) "
            "VALUES (?,?,?,?,?,?,?,?)", (now, stage, EventKind.GATE.value, verdict.value, passed, failed,
                                         pending, detail))]
        if verdict is not Verdict.INCONCLUSIVE:
            statements.append(("UPDATE rollout_stage SET verdict=?, passed=?, failed=?, ended_at=? "
                               "WHERE stage=?", (verdict.value, passed, failed, now, stage)))
            statements += [("INSERT OR REPLACE INTO gate_failure (idx, stage, reason) VALUES (?,?,?)",
                            (idx, stage, reason)) for idx, reason in sorted((failures or {}).items())]
        self._tx(statements)

    def event(self, stage: int, kind: EventKind, at: datetime, detail: str = "") -> None:
        self._tx([("INSERT INTO rollout_event (at, stage, kind, detail) VALUES (?,?,?,?)",
                   (stamp(at), stage, kind.value, detail))])

    def end_stage(self, stage: int, at: datetime) -> None:
        """End a stage that has nothing to gate."""
        self._tx([("UPDATE rollout_stage SET ended_at=COALESCE(ended_at, ?) WHERE stage=?",
                   (stamp(at), stage))])

    def approve(self, stage: int, at: datetime) -> None:
        self._tx([("UPDATE rollout SET approved=MAX(approved, ?)", (stage,)),
                  ("INSERT INTO rollout_event (at, stage, kind, detail) VALUES (?,?,?,?)",
                   (stamp(at), stage, EventKind.APPROVAL.value, f"stage {stage + 1} approved"))])

    def aborted(self, stage: int, rule: str, at: datetime, *, undo: bool) -> None:
        phase = Phase.UNDOING if undo else Phase.ABORTED
        self._tx([("UPDATE rollout SET stage=?, phase=?, since=?, abort_rule=?, abort_at=?, message=?",
                   (stage, phase.value, stamp(at), rule, stamp(at), rule)),
                  ("INSERT INTO rollout_event (at, stage, kind, detail) VALUES (?,?,?,?)",
                   (stamp(at), stage, EventKind.ABORT.value, rule))])

    def set_undo_run(self, run_id: str) -> None:
        self._tx([("UPDATE rollout SET undo_run=?", (run_id,))])

    # --- reading ---------------------------------------------------------------------------------

    def state(self) -> RolloutState:
        r = self._conn.execute("SELECT stages, stage, phase, since, approved, message, abort_rule, abort_at, "
                               "undo_run FROM rollout").fetchone()
        if r is None:
            raise JournalError(f"the journal {self.path} holds no rollout")
        return RolloutState(r[0], r[1], Phase(r[2]), r[3], r[4], r[5], r[6], r[7], r[8])

    def stages(self) -> list[StageRecord]:
        rows = self._conn.execute(
            "SELECT stage, targets, started_at, written_at, gate_started_at, ended_at, verdict, passed, "
            "failed, polls FROM rollout_stage ORDER BY stage").fetchall()
        return [StageRecord(r[0], r[1], r[2], r[3], r[4], r[5], Verdict(r[6]) if r[6] else None, r[7], r[8],
                            r[9]) for r in rows]

    def stage(self, number: int) -> StageRecord:
        found = [s for s in self.stages() if s.stage == number]
        if not found:
            raise JournalError(f"the rollout in {self.path} has no stage {number}")
        return found[0]

    def events(self) -> list[Event]:
        rows = self._conn.execute("SELECT at, stage, kind, verdict, passed, failed, pending, detail "
                                  "FROM rollout_event ORDER BY id").fetchall()
        return [Event(r[0], r[1], EventKind(r[2]), Verdict(r[3]) if r[3] else None, r[4], r[5], r[6], r[7])
                for r in rows]

    def gate_failures(self) -> dict[int, str]:
        return dict(self._conn.execute("SELECT idx, reason FROM gate_failure ORDER BY idx").fetchall())

    def outcome_counts(self) -> dict[int, dict[str, int]]:
        """Per stage: items per outcome (``not_attempted`` for items without one)."""
        out: dict[int, dict[str, int]] = {}
        for stage, outcome, n in self._conn.execute(
                "SELECT m.stage, i.outcome, COUNT(*) FROM rollout_member m JOIN item i ON i.idx = m.idx "
                "GROUP BY m.stage, i.outcome"):
            counts = out.setdefault(stage, {o.value: 0 for o in Outcome})
            counts[outcome or Outcome.NOT_ATTEMPTED.value] += n
        return out

    def tally(self) -> tuple[int, int]:
        """(attempted, failures) of the rollout so far: items with an outcome through apply, and write
        failures plus gate failures."""
        marks = ",".join("?" for _ in ATTEMPTED)
        attempted, failed = self._conn.execute(
            f"SELECT COUNT(*), COALESCE(SUM(i.outcome = ?), 0) FROM rollout_member m JOIN item i "
            f"ON i.idx = m.idx WHERE i.outcome IN ({marks})", (Outcome.FAILED.value, *ATTEMPTED)).fetchone()
        gate = self._conn.execute("SELECT COUNT(*) FROM gate_failure").fetchone()[0]
        return int(attempted), int(failed) + int(gate)
