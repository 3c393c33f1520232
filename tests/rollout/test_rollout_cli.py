"""Rollouts through the bulkops command against a simulator whose devices converge in real time:
manual approval (its own state and exit code, nothing sent while it waits, `approve` goes on), a real
SIGKILL during a gate wait resumed where it was, and the per-stage report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bulkops.cli.main import main
from bulkops.errors import ExitCode
from bulkops.journal.gates import GateStore, Phase, parse_stamp
from bulkops.journal.journal import Journal
from bulkops.plan.file import read_plan
from bulkops.sim.server import SimConfig, SimServer
from tests.conftest import addressed_ids, writes

from .conftest import pin_job

REPO = Path(__file__).resolve().parents[2]
FLEET = "acme/gateway-next"  # about 75 online devices in the demo data of 2,000


@pytest.fixture
def live(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimServer]:
    """A simulator whose devices converge 0.2 s after they see a new target (ticks every 0.1 s)."""
    server = SimServer(SimConfig(seed_demo=2000, tick_interval=0.1, converge_delay=0.2)).start_in_thread()
    monkeypatch.setenv("BALENA_API_URL", server.url)
    monkeypatch.setenv("BALENA_API_KEY", server.api_key)
    monkeypatch.delenv("BALENA_TOKEN", raising=False)
    try:
        yield server
    finally:
        server.stop()


def plan_file(tmp_path: Path, rollout: str) -> Path:
    job = tmp_path / "job.toml"
    job.write_text(pin_job(rollout, fleet=FLEET))
    out = tmp_path / "job.plan.json"
    assert main(["plan", str(job), "-o", str(out)]) == ExitCode.OK
    return out


def the_run(home: Path) -> Path:
    (found,) = sorted((home / "runs").glob("*/journal.sqlite"))
    return found.parent


def phase_of(run: Path) -> tuple[Phase, int] | None:
    store = GateStore.existing(run / "journal.sqlite")
    if store is None:
        return None
    try:
        state = store.state()
        return state.phase, state.stage
    finally:
        store.close()


def test_manual_approval(live: SimServer, home: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """approve = "manual": after each passing stage the run ends awaiting approval (exit 6) and sends
    nothing, `resume` does not go on by itself, `approve` starts the next stage; the last one completes."""
    plan = plan_file(tmp_path, 'stages = ["5", "50%", "100%"]\nwait = 0.3\npoll_every = 0.1\n'
                               'gate_timeout = 10\napprove = "manual"')
    capsys.readouterr()
    assert main(["apply", str(plan), "--yes"]) == ExitCode.AWAITING_APPROVAL
    run = the_run(home)
    err = capsys.readouterr().err
    assert "bulkops: stage 1 of 3: writing 5 devices\n" in err
    assert "bulkops: stage 1 of 3: gate passed (5 of 5)\n" in err
    assert (f"bulkops: awaiting approval: stage 1 of 3 passed its gate; `bulkops approve {run.name}` starts "
            "stage 2") in err
    journal = Journal.open(run)
    assert journal.info().state == "awaiting_approval"
    journal.close()
    sent = len(live.request_log.entries())
    time.sleep(0.5)
    assert main(["resume", run.name]) == ExitCode.AWAITING_APPROVAL
    assert len(live.request_log.entries()) == sent  # nothing while it waits, nothing from resume
    assert f"bulkops: run {run.name} is awaiting approval after stage 1 of 3" in capsys.readouterr().err
    assert main(["approve", run.name]) == ExitCode.AWAITING_APPROVAL
    assert f"bulkops: run {run.name}: stage 1 of 3 approved; the rollout goes on\n" in capsys.readouterr().err
    assert phase_of(run) == (Phase.APPROVAL, 2)
    assert main(["approve", run.name]) == ExitCode.OK
    assert phase_of(run) == (Phase.DONE, 3)
    capsys.readouterr()
    assert main(["approve", run.name]) == ExitCode.INVALID_INPUT
    assert capsys.readouterr().err == (
        f"bulkops: error: run {run.name} is not awaiting approval (its state is done)\n")
    report = tmp_path / "report.json"
    assert main(["report", run.name, "--json", str(report)]) == ExitCode.OK
    text = capsys.readouterr().out
    assert "rollout  stage 3 of 3: done" in text and "  stage  targets  applied" in text
    data = orjson.loads(report.read_bytes())["rollout"]
    assert [(d["kind"], d["stage"]) for d in data["decisions"]] == [
        ("gate", 1), ("approval", 1), ("gate", 2), ("approval", 2), ("gate", 3)]
    assert [s["gate"] for s in data["stage_results"]] == ["pass", "pass", "pass"]
    assert sum(s["outcomes"]["applied"] for s in data["stage_results"]) == sum(
        s["targets"] for s in data["stage_results"])


def test_approve_refuses_runs_that_are_not_rollouts(live: SimServer, home: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`bulkops approve` of a run without a rollout says there is nothing to approve (exit 2)."""
    job = tmp_path / "plain.toml"
    job.write_text(pin_job("").replace("[rollout]\n", ""))
    assert main(["run", str(job), "--yes"]) == ExitCode.OK
    run = the_run(home)
    capsys.readouterr()
    assert main(["approve", run.name]) == ExitCode.INVALID_INPUT
    assert capsys.readouterr().err == (
        f"bulkops: error: run {run.name} is not a staged rollout: there is nothing to approve\n")


def child_env(live: SimServer, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"BALENA_TOKEN", "BALENARC_DATA_DIRECTORY"}}
    env.update(BALENA_API_URL=live.url, BALENA_API_KEY=live.api_key, BULKOPS_HOME=str(home))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def kill_when(proc: subprocess.Popen[bytes], run_of: Path, wanted: tuple[Phase, int]) -> Path:
    """SIGKILL ``proc`` as soon as its rollout is in phase ``wanted``; the run directory."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = sorted((run_of / "runs").glob("*/journal.sqlite")) if (run_of / "runs").is_dir() else []
        if runs and phase_of(runs[0].parent) == wanted:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            return runs[0].parent
        assert proc.poll() is None, "the rollout ended before it could be killed"
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"the rollout never reached {wanted}")


def test_sigkill_during_the_gate_wait_resumes(live: SimServer, home: Path, tmp_path: Path) -> None:
    """A real SIGKILL during a stage's wait, twice: `resume` waits only what is left, polls that stage's
    gate, never writes a stage twice, and never polls a gate that already passed."""
    plan = plan_file(tmp_path, 'stages = ["5", "100%"]\nwait = 1.5\npoll_every = 0.1\ngate_timeout = 10')
    env = child_env(live, home)
    command = [sys.executable, "-m", "bulkops", "apply", str(plan), "--yes"]
    with (tmp_path / "apply.err").open("wb") as err:
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
    run = kill_when(proc, home, (Phase.WAITING, 1))
    with (tmp_path / "resume.err").open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "bulkops", "resume", run.name], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=err)
    kill_when(proc, home, (Phase.WAITING, 2))
    polls_of_stage_1 = GateStore.existing(run / "journal.sqlite")
    assert polls_of_stage_1 is not None
    first = polls_of_stage_1.stages()[0]
    polls_of_stage_1.close()
    assert first.verdict is not None and first.verdict.value == "pass"
    gets_before = len(live.request_log.entries())
    assert main(["resume", run.name]) == ExitCode.OK
    store = GateStore.existing(run / "journal.sqlite")
    assert store is not None
    records = store.stages()
    store.close()
    assert records[0].polls == first.polls  # the passed gate was not polled again
    for r in records:  # each wait ran in full though a process died in it
        assert r.written_at and r.gate_started_at
        assert (parse_stamp(r.gate_started_at) - parse_stamp(r.written_at)).total_seconds() >= 1.5
    stage_1 = {it.target_id for it in read_plan(run / "plan.json").items if it.stage == 1}
    addressed = [i for e in writes(live) for i in addressed_ids(e.url)]
    assert len(addressed) == len(set(addressed))  # no device written twice
    assert stage_1 <= set(addressed)
    polled_after = [e.url for e in live.request_log.entries()[gets_before:]
                    if "should_be_running__release" in e.url]
    assert polled_after and not any(addressed_ids(url) & stage_1 for url in polled_after)
