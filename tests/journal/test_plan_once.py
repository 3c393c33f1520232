"""A plan has one run: applying it again is refused with the run it became, and a lock on the plan id
refuses a second process applying it at the same time."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from bulkops.apply.runner import new_run
from bulkops.cli.main import main
from bulkops.errors import ExitCode, GuardError
from bulkops.journal.plans import PlanClaim
from bulkops.plan.file import read_plan
from bulkops.sim.server import SimServer
from tests.apply.test_kill_resume import REPO, child_env
from tests.conftest import human, start_sim, writes

JOB = """\
name = "once"
[target]
resource = "device"
fleet = "acme/gateway"
[action]
type = "set_env"
name = "ONCE"
value = "on"
"""


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
def env(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimServer]:
    server = start_sim(seed_demo=600)
    monkeypatch.setenv("BALENA_API_URL", server.url)
    monkeypatch.setenv("BALENA_API_KEY", server.api_key)
    monkeypatch.delenv("BALENA_TOKEN", raising=False)
    try:
        yield server
    finally:
        server.stop()


def _plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    plan = tmp_path / "p.json"
    assert main(["plan", str(job), "-o", str(plan)]) == ExitCode.OK
    capsys.readouterr()
    return plan


def _run_id(err: str) -> str:
    return err.split("bulkops: run ")[1].split(maxsplit=1)[0]


def test_second_apply_of_a_plan_is_refused(env: SimServer, home: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Applying a plan that already has a run: exit 3 naming the run and its state, no request, no new
    run; `bulkops resume RUN` still works on that run."""
    plan = _plan(tmp_path, capsys)
    assert main(["apply", str(plan), "--yes"]) == ExitCode.OK
    run_id = _run_id(human(capsys.readouterr().err))
    env.request_log.clear()
    assert main(["apply", str(plan), "--yes"]) == ExitCode.REFUSED_BY_GUARD
    plan_id = read_plan(plan).plan_id
    assert human(capsys.readouterr().err) == (
        f"bulkops: error: plan {plan_id} was already applied as run {run_id} (done); plan again or "
        f"`bulkops resume {run_id}`\n")
    assert env.request_log.entries() == []
    assert [p.name for p in (home / "runs").iterdir()] == [run_id]
    assert main(["resume", run_id]) == ExitCode.OK
    assert writes(env) == []


def test_two_processes_applying_one_plan_at_once(env: SimServer, home: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Two `bulkops apply` processes started together on one plan: one applies it, the other is refused
    by the plan's lock (exit 3) before sending anything; every create is sent once (no 409)."""
    plan = _plan(tmp_path, capsys)
    creates = read_plan(plan).counts()["create"]
    assert creates > 100
    env.rate_limiter.set_policy("fixed:150/1s")  # about 2 s of applying: the processes overlap
    env.request_log.clear()
    cmd = [sys.executable, "-m", "bulkops", "apply", str(plan), "--yes"]
    environ = child_env(env.url, env.api_key, home)
    procs = [subprocess.Popen(cmd, env=environ, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [ExitCode.OK, ExitCode.REFUSED_BY_GUARD], results
    loser = next(err for p, (_, err) in zip(procs, results, strict=True)
                 if p.returncode == ExitCode.REFUSED_BY_GUARD)
    plan_id = read_plan(plan).plan_id
    assert human(loser) == (f"bulkops: error: plan {plan_id} is being applied by another bulkops process; "
                     "see `bulkops runs`\n")
    assert len(list((home / "runs").iterdir())) == 1
    entries = env.request_log.entries()
    posts = [e for e in entries if e.method == "POST"]
    print(f"two applies at once: {len(read_plan(plan).items)} items, {creates} creates, {len(entries)} "
          f"requests, {sum(1 for e in posts if e.status == 201)} POSTs answered 201")
    assert sum(1 for e in posts if e.status == 201) == creates
    assert [e for e in posts if e.status == 409] == []


def test_a_run_killed_before_its_journal_does_not_use_up_the_plan(env: SimServer, home: Path,
                                                                 tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The plan's run recorded but its journal never made (a kill in between; nothing was sent): apply
    goes on, as that same run."""
    plan = _plan(tmp_path, capsys)
    with PlanClaim.take(read_plan(plan).plan_id) as claim:
        claim.record("20260101T000000Z-abcdef")
    assert main(["apply", str(plan), "--yes"]) == ExitCode.OK
    assert _run_id(human(capsys.readouterr().err)) == "20260101T000000Z-abcdef"


def test_new_run_refuses_a_plan_that_has_a_run(env: SimServer, home: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The library's new_run keeps the same rule: a second run of one plan is a GuardError."""
    plan = read_plan(_plan(tmp_path, capsys))
    first = new_run(plan)
    first.close()
    with pytest.raises(GuardError) as exc:
        new_run(plan)
    assert str(exc.value) == (f"plan {plan.plan_id} was already applied as run {first.run_id} (planned); "
                              f"plan again or `bulkops resume {first.run_id}`")
