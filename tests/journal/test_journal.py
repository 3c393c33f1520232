"""The run journal: durable, owner-only, written before and after every request."""

from __future__ import annotations

import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bulkops.errors import JournalError
from bulkops.journal.journal import DONE, PLANNED, SENT, Journal, Outcomes
from bulkops.model import Action, ActionType, ChangeKind, Outcome, Plan, PlanItem, RunState


def make_plan(n: int = 4) -> Plan:
    items = []
    for i in range(n):
        kind = ChangeKind.NOOP if i == 0 else ChangeKind.CHANGE if i % 2 else ChangeKind.CREATE
        before = {"value": "info"} if kind is not ChangeKind.CREATE else None
        items.append(PlanItem(100 + i, f"uuid{i}", kind, "device_environment_variable",
                              None if kind is ChangeKind.CREATE else 500 + i, before, {"value": "debug"},
                              {"device": 100 + i, "name": "LOG_LEVEL"}))
    return Plan(job_name="j", job_path="", job_fingerprint="", api_url="http://127.0.0.1:1",
                created_at=datetime.now(UTC), target_resource="device", compiled_filter="",
                action=Action(ActionType.SET_ENV, name="LOG_LEVEL", value="debug"), items=tuple(items),
                population=n)


def test_create_records_every_item_and_noops_are_done(tmp_path: Path) -> None:
    """Creating a journal stores each plan item; no-ops are recorded done with outcome noop."""
    j = Journal.create(tmp_path, make_plan())
    items = j.items()
    assert [it.state for it in items] == [DONE, PLANNED, PLANNED, PLANNED]
    assert items[0].outcome is Outcome.NOOP
    assert items[1].before == {"value": "info"} and items[1].key == {"device": 101, "name": "LOG_LEVEL"}
    assert j.state() is RunState.PLANNED
    assert j.counts()["noop"] == 1 and j.counts()["not_attempted"] == 3
    j.close()


def test_files_are_owner_only_and_wal(tmp_path: Path) -> None:
    """The journal file (and its WAL) is mode 0600 and the database is in WAL mode."""
    j = Journal.create(tmp_path, make_plan())
    j.mark_sent([1], method="PATCH", path="/x")
    for p in tmp_path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    conn = sqlite3.connect(tmp_path / "journal.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    j.close()


def test_sent_then_answered_then_outcome_survives_reopen(tmp_path: Path) -> None:
    """An attempt is written before the request and its answer after; a reopened journal has both."""
    j = Journal.create(tmp_path, make_plan())
    attempt = j.mark_sent([1, 3], method="PATCH", path="/device_environment_variable?$filter=id in (501,503)")
    mid = Journal.open(tmp_path)  # what a crash right now would leave
    assert [it.state for it in mid.items()][1:] == [SENT, PLANNED, SENT]
    assert mid.attempts()[0].status is None and mid.attempts()[0].items == (1, 3)
    mid.close()
    j.mark_answered(attempt, status=200)
    j.record([Outcomes(1, Outcome.APPLIED, 200), Outcomes(3, Outcome.DRIFTED, 200, "changed")])
    j.close()
    again = Journal.open(tmp_path.parent, tmp_path.name)
    items = again.items()
    assert (items[1].outcome, items[1].attempts, items[1].status) == (Outcome.APPLIED, 1, 200)
    assert (items[3].outcome, items[3].error) == (Outcome.DRIFTED, "changed")
    assert again.attempts()[0].status == 200 and again.attempts()[0].answered_at is not None
    assert again.counts() == {"applied": 1, "noop": 1, "drifted": 1, "failed": 0, "not_attempted": 1,
                              "skipped": 0}
    again.close()


def test_reset_returns_sent_items_to_planned(tmp_path: Path) -> None:
    """Items read back as not in place after an unanswered request become planned again."""
    j = Journal.create(tmp_path, make_plan())
    j.mark_sent([2], method="POST", path="/device_environment_variable")
    j.reset([2])
    assert j.items()[2].state == PLANNED and j.items()[2].attempts == 1
    j.close()


def test_state_and_info(tmp_path: Path) -> None:
    """The run row keeps state, message, job and totals for `bulkops runs`."""
    j = Journal.create(tmp_path, make_plan())
    j.set_state(RunState.INTERRUPTED, "stopped by SIGINT")
    info = j.info()
    assert (info.state, info.job_name, info.action, info.total) == ("interrupted", "j", "set_env", 4)
    assert j.message() == "stopped by SIGINT"
    j.close()


def test_second_create_and_missing_open_are_refused(tmp_path: Path) -> None:
    """A run directory holds one journal; opening a run without one is a JournalError."""
    Journal.create(tmp_path, make_plan()).close()
    with pytest.raises(JournalError, match="a journal already exists"):
        Journal.create(tmp_path, make_plan())
    with pytest.raises(JournalError) as exc:
        Journal.open(tmp_path / "nope")
    assert str(exc.value) == f"no journal at {tmp_path / 'nope' / 'journal.sqlite'}"


def test_run_lock_refuses_a_second_writer(tmp_path: Path) -> None:
    """Only one process applies a run at a time; a 'running' run nobody holds is listed as crashed."""
    first = Journal.create(tmp_path, make_plan())
    first.set_state(RunState.RUNNING)
    assert first.info().state == "crashed"
    first.lock()
    second = Journal.open(tmp_path)
    assert second.in_use() and second.info().state == "running"
    with pytest.raises(JournalError) as exc:
        second.lock()
    assert str(exc.value) == f"run {tmp_path.name} is being applied by another bulkops process"
    first.close()
    assert not second.in_use()
    second.lock()
    second.close()
