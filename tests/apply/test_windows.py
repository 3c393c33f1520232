"""The engine takes pending items from the journal a window at a time (``engine.WINDOW``): every item is
dispatched once across windows, a stop and resume between windows finishes the run, and a run's results
and reports stream from the journal."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bulkops.apply import engine
from bulkops.apply.engine import RunControl
from bulkops.journal import report
from bulkops.model import Outcome, Progress, RunState
from bulkops.sim.server import SimServer
from bulkops.spool import Spool
from tests.apply.test_apply_e2e import apply_only, job_text, plan_only, resume_only
from tests.conftest import addressed_ids, rows, writes

pytestmark = pytest.mark.anyio


async def test_every_item_once_across_windows(sim: SimServer, home: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows of 97 items: every change and create is applied, no row is written by two requests."""
    monkeypatch.setattr(engine, "WINDOW", 97)
    plan = await plan_only(sim, job_text('type = "set_env"\nname = "LOG_LEVEL"\nvalue = "debug"'))
    counts = plan.counts()
    assert len(plan.items) > 5 * 97 and isinstance(plan.items, Spool)
    summary, journal = await apply_only(sim, plan)
    assert summary.state is RunState.DONE
    assert summary.counts["applied"] == counts["create"] + counts["change"]
    assert isinstance(summary.results, Spool) and len(summary.results) == len(plan.items)
    assert [r.index for r in summary.results] == list(range(len(plan.items)))
    patched: list[int] = []
    for entry in writes(sim):
        if entry.method == "PATCH":
            patched.extend(addressed_ids(entry.url))
    assert len(patched) == len(set(patched)) == counts["change"]
    fleet = sim.demo.fleets["acme/gateway"]
    values = rows(sim, "SELECT DISTINCT v.value FROM device d JOIN device_environment_variable v "
                       "ON v.device=d.id AND v.name='LOG_LEVEL' WHERE d.belongs_to__application=?", fleet)
    assert values == [("debug",)]
    journal.close()


async def test_stop_between_windows_then_resume(sim: SimServer, home: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "WINDOW", 150)
    plan = await plan_only(sim, job_text('type = "set_env"\nname = "LOG_LEVEL"\nvalue = "warn"'))
    control = RunControl(grace=5.0)

    def progress(p: Progress) -> None:
        if p.done >= len(plan.items) // 3:
            control.stop()

    summary, journal = await apply_only(sim, plan, control=control, on_progress=progress)
    assert summary.state is RunState.INTERRUPTED and summary.counts["not_attempted"] > 150
    journal.close()
    final, resumed = await resume_only(sim, plan, journal.run_dir)
    assert final.state is RunState.DONE
    assert final.counts["not_attempted"] == 0 and final.counts["failed"] == 0
    dupes = rows(sim, "SELECT device, COUNT(*) FROM device_environment_variable WHERE name='LOG_LEVEL' "
                      "GROUP BY device HAVING COUNT(*) > 1")
    assert dupes == []
    assert all(r.outcome in (Outcome.APPLIED, Outcome.NOOP) for r in final.results)
    resumed.close()


async def test_streamed_reports_are_the_whole_report(sim: SimServer, home: Path) -> None:
    """The JSON and CSV reports written a piece at a time are the documents built whole."""
    plan = await plan_only(sim, job_text('type = "set_tag"\nkey = "ring"\nvalue = "canary"'))
    _, journal = await apply_only(sim, plan)
    assert orjson.loads(b"".join(report.json_chunks(journal))) == report.report_json(journal)
    csv = report.csv_text(journal).splitlines()
    assert len(csv) == 1 + len(plan.items) and csv[0].startswith("index,id,label")
    assert "not applied" not in report.summary_text(journal)
    journal.close()
