"""Real processes sharing one BULKOPS_HOME: one slot started by two runs once; SIGTERM stops the scheduler
like apply and the run resumes; the health port of a running scheduler answers."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkops.sim.server import SimServer
from tests.conftest import rows, writes
from tests.schedule.conftest import tag_job, write

BULKOPS = [sys.executable, "-m", "bulkops"]


@pytest.fixture
def proc_env(sim: SimServer, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BALENA_", "BULKOPS_"))}
    env.update(BALENA_API_URL=sim.url, BALENA_API_KEY=sim.api_key, BULKOPS_HOME=str(home))
    return env


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*BULKOPS, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=60)
        out.append((p.returncode, stdout, stderr))
    return out


def tagged(sim: SimServer) -> int:
    return int(rows(sim, "SELECT COUNT(*) FROM device_tag WHERE tag_key='nightly'")[0][0])


def test_two_unattended_runs_of_one_slot_apply_it_once(sim: SimServer, jobs: Path,
                                                       proc_env: dict[str, str]) -> None:
    """Two `run --unattended --slot S` processes started together (two CronJob pods): one applies, the other
    finds the slot taken; the server sees one set of writes."""
    path = write(jobs, "tag.toml", tag_job("tag", schedule='"0 3 * * *"'))
    argv = ["run", str(path), "--yes", "--unattended", "--slot", "2027-01-10T03:00:00Z"]
    results = finish([start(argv, proc_env), start(argv, proc_env)])
    assert sorted(code for code, _, _ in results) == [0, 0]
    applied = [r for r in results if "state    done" in r[1]]
    taken = [r for r in results if "was taken already" in r[2]]
    assert len(applied) == 1 and len(taken) == 1, results
    assert tagged(sim) == 82
    assert [e.method for e in writes(sim)] == ["POST"] * 82


def test_two_unattended_runs_from_the_schedule_write_once(sim: SimServer, jobs: Path,
                                                          proc_env: dict[str, str]) -> None:
    """Two `run --unattended` processes without --slot (the slot comes from the schedule, as in a CronJob
    pod): the server sees one set of writes, and at most one of them applied anything."""
    path = write(jobs, "tag.toml", tag_job("tag", schedule='"* * * * *"'))
    argv = ["run", str(path), "--yes", "--unattended"]
    results = finish([start(argv, proc_env), start(argv, proc_env)])
    assert [code for code, _, _ in results] == [0, 0], results
    assert sum("state    done" in out for _, out, _ in results) == 1
    assert tagged(sim) == 82
    assert [e.method for e in writes(sim)] == ["POST"] * 82


def test_two_schedulers_on_one_home_run_a_slot_once(sim: SimServer, jobs: Path,
                                                    proc_env: dict[str, str]) -> None:
    """Two `schedule DIR --once` processes at the same moment: the slot runs in exactly one of them."""
    write(jobs, "tag.toml", tag_job("tag", schedule='"0 3 * * *"'))
    argv = ["schedule", str(jobs), "--once", "--at", "2027-01-10T03:00:20Z"]
    results = finish([start(argv, proc_env), start(argv, proc_env)])
    assert [code for code, _, _ in results] == [0, 0], results
    done = [e for _, _, err in results for e in events(err) if e["event"] == "bulkops.schedule.slot.done"]
    assert len(done) == 1 and done[0]["slot"] == "2027-01-10T03:00:00Z"
    # every event of the run, the engine's included, names the job, the slot and the run
    run = [e for _, _, err in results for e in events(err) if e.get("run_id") == done[0]["run_id"]]
    assert {e["event"] for e in run} >= {"bulkops.schedule.slot.started", "bulkops.apply.start",
                                         "bulkops.schedule.slot.done"}
    assert {(e["job"], e["slot"]) for e in run} == {("tag", "2027-01-10T03:00:00Z")}
    assert tagged(sim) == 82 and len(writes(sim)) == 82
    # the token is in no event, no output and not in the slot store
    assert all(sim.api_key not in out + err for _, out, err in results)
    store = Path(proc_env["BULKOPS_HOME"]) / "schedule" / "slots.sqlite"
    assert sim.api_key.encode() not in store.read_bytes()


def events(stderr: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def wait_for(proc: subprocess.Popen[str], event: str, seen: list[dict[str, Any]], deadline: float
             ) -> dict[str, Any]:
    """Read the process's JSON-line events until ``event`` arrives."""
    assert proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = proc.stderr.readline()
            if not line:
                break
            if line.startswith("{"):
                seen.append(orjson.loads(line))
                if seen[-1]["event"] == event:
                    return seen[-1]
    finally:
        sel.unregister(proc.stderr)
    raise AssertionError(f"no {event} event; saw {[e['event'] for e in seen]}")


def test_sigterm_stops_the_run_resumably(sim: SimServer, jobs: Path, proc_env: dict[str, str],
                                         home: Path) -> None:
    """A long-lived scheduler with --health-port answers /healthz on 127.0.0.1; SIGTERM mid-run stops it
    like apply (exit 5, the run interrupted and named); --status shows it; `bulkops resume` finishes it."""
    write(jobs, "tag.toml", tag_job("gw", schedule='"* * * * *"', fleet="acme/gateway"))
    sim.faults.set_spec("latency=60ms,methods=POST")
    proc = start(["schedule", str(jobs), "--health-port", "0"], proc_env)
    seen: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        listening = wait_for(proc, "bulkops.schedule.health.listening", seen, deadline)
        assert listening["host"] == "127.0.0.1"
        started = wait_for(proc, "bulkops.schedule.slot.started", seen, deadline)
        with urllib.request.urlopen(f"http://127.0.0.1:{listening['port']}/healthz", timeout=5) as answer:
            health = orjson.loads(answer.read())
        assert answer.status == 200 and health["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run_id = started["run_id"]
    assert proc.returncode == 5, stderr
    assert f"run {run_id} interrupted; continue it with `bulkops resume {run_id}`" in stderr
    assert 0 < tagged(sim) < 160
    status = subprocess.run([*BULKOPS, "schedule", str(jobs), "--status", "--json"], env=proc_env,
                            capture_output=True, text=True, timeout=30, check=True)
    [job] = orjson.loads(status.stdout)["jobs"]
    assert (job["last"]["state"], job["last"]["run_id"]) == ("interrupted", run_id)
    sim.faults.set_spec("none")
    resumed = subprocess.run([*BULKOPS, "resume", run_id], env=proc_env, capture_output=True, text=True,
                             timeout=60, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert tagged(sim) == 160
