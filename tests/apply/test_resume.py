"""SIGINT/SIGTERM on a real `bulkops apply` process, then `bulkops resume`: nothing lost, nothing twice."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bulkops.cli.main import main
from bulkops.errors import ExitCode
from bulkops.sim.server import SimServer
from tests.conftest import human, rows, start_sim

REPO = Path(__file__).resolve().parents[2]
JOB = """\
name = "new-flag"
[target]
resource = "device"
fleet = "acme/gateway"
[action]
type = "set_env"
name = "NEW_FLAG"
value = "on"
"""


def _sim_for_cli(monkeypatch: pytest.MonkeyPatch, **config: Any) -> Iterator[SimServer]:
    """A simulator with 600 demo devices, its URL and key in the CLI's environment."""
    server = start_sim(seed_demo=600, **config)
    monkeypatch.setenv("BALENA_API_URL", server.url)
    monkeypatch.setenv("BALENA_API_KEY", server.api_key)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def slow_sim(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimServer]:
    yield from _sim_for_cli(monkeypatch, rate_limit="fixed:60/1s")


def _done_items(home: Path) -> int:
    for journal in (home / "runs").glob("*/journal.sqlite"):
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM item WHERE state='done'").fetchone()[0])
        except sqlite3.Error:
            return 0
        finally:
            conn.close()
    return 0


def _interrupt(tmp_path: Path, home: Path, signals: list[signal.Signals]) -> tuple[int, str, str]:
    plan = tmp_path / "p.json"
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    assert main(["plan", str(job), "-o", str(plan)]) == ExitCode.OK
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulkops", "apply", str(plan), "--yes"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env(), cwd=REPO,
    )
    deadline = time.monotonic() + 30
    while _done_items(home) < 40 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.02)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def _run_id(err: str) -> str:
    line = next(x for x in human(err).splitlines() if "bulkops resume " in x)
    return line.split("bulkops resume ")[1].strip("` ")


def _assert_complete(sim: SimServer) -> None:
    fleet = sim.demo.fleets["acme/gateway"]
    n = rows(sim, "SELECT COUNT(*) FROM device WHERE belongs_to__application=?", fleet)[0][0]
    got = rows(sim, "SELECT COUNT(*), COUNT(DISTINCT device) FROM device_environment_variable "
                    "WHERE name='NEW_FLAG' AND value='on'")
    assert got == [(n, n)]
    created = [e for e in sim.request_log.entries() if e.method == "POST" and e.status == 201]
    assert len(created) == n  # no POST applied twice


@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],
                         ids=["sigint", "sigterm", "double-sigint"])
def test_signal_then_resume(slow_sim: SimServer, home: Path, tmp_path: Path, signals: list[signal.Signals],
                            capsys: pytest.CaptureFixture[str]) -> None:
    """A signal stops the run with exit 5 and the resume command; resume finishes every target once."""
    code, out, err = _interrupt(tmp_path, home, signals)
    assert code == ExitCode.INTERRUPTED, (out, err)
    assert "state    interrupted" in out, (out, err)
    run_id = _run_id(err)
    slow_sim.rate_limiter.set_policy("none")
    capsys.readouterr()
    assert main(["resume", run_id]) == ExitCode.OK
    report = capsys.readouterr().out
    assert "state    done" in report and "not_attempted 0" in report and "failed 0" in report
    _assert_complete(slow_sim)


def test_resume_of_finished_run_sends_nothing(slow_sim: SimServer, home: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Resuming a run that is done reads nothing back and writes nothing."""
    slow_sim.rate_limiter.set_policy("none")
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    assert main(["run", str(job), "--yes"]) == ExitCode.OK
    run_id = human(capsys.readouterr().err).split("bulkops: run ")[1].split()[0]
    before = len(slow_sim.request_log.entries())
    assert main(["resume", run_id]) == ExitCode.OK
    assert len(slow_sim.request_log.entries()) == before
    _assert_complete(slow_sim)


@pytest.fixture
def latent_sim(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimServer]:
    yield from _sim_for_cli(monkeypatch, faults="latency=4ms~2ms,methods=POST,seed=5")


def test_sigkill_at_random_points_then_resume(latent_sim: SimServer, home: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL at random points of a run, then resume: every target once, no POST applied twice."""
    rng = random.Random(7)  # reproducible kill points
    fleet = latent_sim.demo.fleets["acme/gateway"]
    n = rows(latent_sim, "SELECT COUNT(*) FROM device WHERE belongs_to__application=?", fleet)[0][0]
    for trial in range(5):
        name = f"KILL_{trial}"
        job = tmp_path / f"{name}.toml"
        job.write_text(JOB.replace("NEW_FLAG", name))
        plan = tmp_path / f"{name}.json"
        assert main(["plan", str(job), "-o", str(plan)]) == ExitCode.OK
        before = {p.name for p in (home / "runs").glob("*")} if (home / "runs").exists() else set()
        proc = subprocess.Popen(  # our own CLI
            [sys.executable, "-m", "bulkops", "apply", str(plan), "--yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_child_env(), cwd=REPO,
        )
        deadline = time.monotonic() + 20
        while _done_items_of(home, before) < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait(timeout=10)
        (run_id,) = {p.name for p in (home / "runs").glob("*")} - before
        capsys.readouterr()
        assert main(["runs"]) == ExitCode.OK
        listed = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(run_id))
        assert listed.split()[1] in {"crashed", "done"}  # killed mid-run, or it had just finished
        assert main(["resume", run_id]) == ExitCode.OK
        assert "not_attempted 0" in capsys.readouterr().out
        got = rows(latent_sim, "SELECT COUNT(*), COUNT(DISTINCT device) FROM device_environment_variable "
                               "WHERE name=? AND value='on'", name)
        assert got == [(n, n)], trial
        created = [e for e in latent_sim.request_log.entries()
                   if e.method == "POST" and e.status == 201 and e.outcome in ("ok", "fault:lost")]
        assert len(created) == n * (trial + 1), trial


def _done_items_of(home: Path, skip: set[str]) -> int:
    for journal in (home / "runs").glob("*/journal.sqlite"):
        if journal.parent.name in skip:
            continue
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM item WHERE state='done'").fetchone()[0])
        except sqlite3.Error:
            return 0
        finally:
            conn.close()
    return 0


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env
