"""Ctrl-C at any moment, with real signals to the real command: no traceback; exit 130 while nothing has
been sent (even in the middle of loading aiohttp), 5 once requests were sent, naming what was left."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bulkops.sim.server import SimServer
from tests.apply.test_kill_resume import child_env
from tests.cli.ptyrun import spawn
from tests.conftest import start_sim

JOB = """name = "levels"
[target]
resource = "device"
fleet = "acme/sensor"
[action]
type = "set_env"
name = "LOG_LEVEL"
value = "info"
"""
NATIVE = ("aiohttp", "multidict", "yarl", "frozenlist")  # compiled parts of the HTTP stack


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bulkops", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _loading_http_stack(pid: int) -> bool:
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return any(f"/{name}/" in maps for name in NATIVE)


def _last_event(stderr: str) -> dict[str, object]:
    lines = stderr.splitlines()
    assert lines, "nothing on stderr"
    doc = json.loads(lines[-1])
    assert isinstance(doc, dict)
    return doc


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the child load aiohttp")
def test_ctrl_c_while_loading_aiohttp_exits_130(sim: SimServer, tmp_path: Path) -> None:
    """SIGINT while the command is still importing its HTTP stack: exit 130, one line, no traceback,
    no request."""
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    env = child_env(sim.url, sim.api_key, tmp_path)
    proc = _start(["plan", str(job), "-o", str(tmp_path / "p.json")], env)
    deadline = time.monotonic() + 20
    while not _loading_http_stack(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out == ""
    event = _last_event(err)
    assert (event["event"], event["message"], event["exit_code"]) == (
        "bulkops.cli.interrupted", "interrupted before any request was sent", 130)
    assert sim.request_log.entries() == []


def test_ctrl_c_after_requests_exits_5(tmp_path: Path) -> None:
    """SIGINT while planning waits out a 429: exit 5, saying how many requests went and that nothing was
    changed."""
    sim = start_sim(rate_limit="fixed:2/60s")
    try:
        job = tmp_path / "job.toml"
        job.write_text(JOB)
        proc = _start(["plan", str(job), "-o", str(tmp_path / "p.json")],
                      child_env(sim.url, sim.api_key, tmp_path))
        deadline = time.monotonic() + 30
        while not any(e.status == 429 for e in sim.request_log.entries()) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        sent = len(sim.request_log.entries())
    finally:
        sim.stop()
    assert proc.returncode == 5, err
    assert "Traceback" not in err
    event = _last_event(err)
    assert event["message"] == f"interrupted after {sent} requests; no run was started, nothing was changed"
    assert not (tmp_path / "p.json").exists()


def test_ctrl_c_at_the_prompt(sim: SimServer, tmp_path: Path) -> None:
    """Ctrl-C typed at apply's confirmation prompt on a terminal: exit 130, nothing sent, no traceback."""
    env = child_env(sim.url, sim.api_key, tmp_path / "home")
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    plan = tmp_path / "p.json"
    assert subprocess.run([sys.executable, "-m", "bulkops", "plan", str(job), "-o", str(plan)], env=env,
                          capture_output=True, check=False, timeout=60).returncode == 0
    sim.request_log.clear()
    term = spawn(["apply", str(plan)], env)
    term.wait_for(r"Apply these \d+ changes\? \[y/N\] ")
    term.interrupt()
    assert term.finish() == 130
    text = term.text()
    assert "bulkops: interrupted before any request was sent" in text and "Traceback" not in text
    assert sim.request_log.entries() == []
