"""Reports from a journal: the summary, CSV and JSON with one row per target."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

import orjson

from bulkops.journal import report
from bulkops.journal.journal import Journal, Outcomes
from bulkops.model import Outcome, RunState
from tests.journal.test_journal import make_plan


def _journal(tmp_path: Path) -> Journal:
    run_dir = tmp_path / "run1"
    run_dir.mkdir()
    j = Journal.create(run_dir, make_plan(5))
    a = j.mark_sent([1, 3], method="PATCH", path="/device_environment_variable?$filter=id in (501,503)")
    j.mark_answered(a, status=200)
    j.record([Outcomes(1, Outcome.APPLIED, 200), Outcomes(3, Outcome.DRIFTED, 200, "changed on the server")])
    b = j.mark_sent([2], method="POST", path="/device_environment_variable")
    j.mark_answered(b, status=500, error="HTTP 500")
    j.record([Outcomes(2, Outcome.FAILED, 500, "HTTP 500: server error")])
    j.set_state(RunState.DONE)
    return j


def test_summary_counts_every_outcome(tmp_path: Path) -> None:
    """The summary shows state, per-outcome counts and the targets not applied with their reasons."""
    j = _journal(tmp_path)
    text = report.summary_text(j)
    assert "state    done" in text
    assert "outcomes applied 1   noop 1   drifted 1   failed 1   not_attempted 1   skipped 0" in text
    assert "  drifted uuid3 HTTP 200: changed on the server" in text
    assert "  failed uuid2 HTTP 500: HTTP 500: server error" in text
    j.close()


def test_csv_and_json_rows(tmp_path: Path) -> None:
    """CSV and JSON hold one row per target with before, after, outcome, status, attempts, error; 0600."""
    j = _journal(tmp_path)
    report.write_csv(j, tmp_path / "r.csv")
    report.write_json(j, tmp_path / "r.json")
    with (tmp_path / "r.csv").open() as fh:
        got = list(csv.DictReader(fh))
    assert [r["outcome"] for r in got] == ["noop", "applied", "failed", "drifted", "not_attempted"]
    assert got[1]["before"] == '{"value":"info"}' and got[1]["after"] == '{"value":"debug"}'
    assert (got[2]["status"], got[2]["attempts"], got[2]["error"]) == ("500", "1", "HTTP 500: server error")
    data = orjson.loads((tmp_path / "r.json").read_bytes())
    assert data["counts"]["failed"] == 1 and data["requests_journaled"] == 2 and len(data["items"]) == 5
    for name in ("r.csv", "r.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    j.close()
