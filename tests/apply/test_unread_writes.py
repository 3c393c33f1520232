"""A write the server answered but whose read-back failed is not a finished failure: the change may be on
the server. Its targets stay ``sent``, the run stops with a resume command, and resume reads them back."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bulkops import apply_plan, new_run, open_client
from bulkops.errors import ExitCode
from bulkops.journal.journal import SENT
from bulkops.model import ChangeKind, Outcome, RunState
from bulkops.sim.server import SimServer
from tests.api.test_hostile_server import FLEET as HOSTILE_FLEET
from tests.api.test_hostile_server import Spoiler, hostile
from tests.apply.conditional_helpers import Interloper, interloped
from tests.apply.test_apply_e2e import resume_only
from tests.apply.test_conditional_writes import _apply, _plan
from tests.apply.test_kill_resume import (
    bulkops,
    child_env,
    job_text,
    make_plan_file,
    preseed,
    read_report,
    the_run,
)
from tests.conftest import human, rows, writes

__all__ = ["hostile", "interloped"]
pytestmark = pytest.mark.anyio
JOB = """\
name = "unread"
[target]
resource = "device"
fleet = "acme/gateway-next"
filter = "device_environment_variable/any(v:v/name eq 'LOG_LEVEL')"
[action]
type = "set_env"
name = "LOG_LEVEL"
value = "trace"
[options]
max_attempts = 2
"""


async def test_write_answered_but_not_read_back_stays_sent_and_resume_reads_it(
    interloped: tuple[SimServer, Interloper, str], home: Path
) -> None:
    """PATCH answered 200, read-back answered 502 twice: the targets stay sent (not failed), the run
    stops, and resume reads them back as applied without writing again."""
    sim, proxy, url = interloped
    plan = await _plan(url, sim.api_key, JOB)
    changes = [i for i, it in enumerate(plan.items) if it.kind is ChangeKind.CHANGE]
    assert changes and len(changes) == len(plan.items) - plan.counts()["noop"]
    proxy.break_reads.add("device_environment_variable")
    async with open_client(url, sim.api_key, plan.options) as client:
        journal = new_run(plan)
        summary = await apply_plan(plan, client, journal)
    assert summary.state is RunState.STOPPED
    assert summary.message.startswith(
        f"{len(changes)} targets were written but could not be read back; resume the run to read them "
        f"back (GET {url}/v7/device_environment_variable?"), summary.message
    items = journal.items()
    assert {(items[i].state, items[i].outcome) for i in changes} == {(SENT, None)}
    run_dir = journal.run_dir
    journal.close()
    ids = ",".join(str(plan.items[i].row_id) for i in changes)
    held = rows(sim, f"SELECT DISTINCT value FROM device_environment_variable WHERE id IN ({ids})")
    assert held == [("trace",)]
    written = len(writes(sim))
    final, resumed = await resume_only(sim, plan, run_dir)
    assert final.state is RunState.DONE and final.counts["applied"] == len(changes)
    assert {resumed.items()[i].outcome for i in changes} == {Outcome.APPLIED}
    resumed.close()
    assert len(writes(sim)) == written  # read back, nothing sent again


async def test_write_refused_and_not_read_back_fails_with_the_refusal(
    interloped: tuple[SimServer, Interloper, str], home: Path
) -> None:
    """A PATCH the server refused (400) whose read-back fails too: failed, with the refusal's own error."""
    sim, proxy, url = interloped
    plan = await _plan(url, sim.api_key, JOB)
    proxy.refuse[("PATCH", "device_environment_variable")] = (400, "not today")
    proxy.break_reads.add("device_environment_variable")
    summary, got = await _apply(url, sim.api_key, plan)
    assert summary.state is RunState.DONE
    failed = {target: err for target, (outcome, err) in got.items() if outcome is Outcome.FAILED}
    assert len(failed) == plan.counts()["change"]
    for err in failed.values():
        assert err.startswith(f"PATCH {url}/v7/device_environment_variable?$filter="), err
        assert err.endswith(": HTTP 400: the request was refused: not today"), err


@pytest.mark.timeout(60)
def test_truncated_read_back_stops_the_cli_run_and_resume_finishes(
    hostile: tuple[SimServer, Spoiler, str], tmp_path: Path
) -> None:
    """`bulkops apply` whose read-backs come back truncated: exit 4 with the reason and the resume command,
    the changed targets still sent; `bulkops resume` then reads them back: exit 0, all applied."""
    sim, spoiler, url = hostile
    preseed(sim, "HOSTILE", random.Random(9), HOSTILE_FLEET)
    job = tmp_path / "job.toml"
    job.write_text(job_text("hostile", "HOSTILE").replace("acme/gateway", HOSTILE_FLEET))
    plan_file = tmp_path / "p.json"
    plan = make_plan_file(url, sim.api_key, job, plan_file)
    changes = plan.counts()["change"]
    assert changes > 5
    spoiler.rules[("GET", "device_environment_variable")] = "truncated"
    env = child_env(url, sim.api_key, tmp_path / "home")
    proc = bulkops(["apply", str(plan_file), "--yes"], env, timeout=50)
    assert proc.returncode == ExitCode.RUN_FAILED, proc.stderr
    run_dir = the_run(tmp_path / "home")
    assert run_dir is not None
    lines = human(proc.stderr).splitlines()
    assert lines[-2].startswith(f"bulkops: run stopped: {changes} targets were written but could not be read "
                                f"back; resume the run to read them back (GET {url}/v7/device_environment_"
                                "variable?"), lines
    assert "HTTP 200: unexpected answer: expected valid JSON, got '{\"d\":[{" in lines[-2], lines[-2]
    assert lines[-1] == f"bulkops: continue with `bulkops resume {run_dir.name}`"
    spoiler.rules.clear()
    resumed = bulkops(["resume", run_dir.name], env, timeout=50)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    report = read_report(run_dir, tmp_path / "r.json")
    assert {r["outcome"] for r in report["items"]} <= {"applied", "noop"}
