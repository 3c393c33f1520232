"""The live display as a person sees it: the real `bulkops run` in a pseudo-terminal against a rate-limited
simulator — the pause announced with its seconds, the learned rate, human text only (no JSON), the summary
on lines of its own, and Ctrl-C mid-run stopping cleanly with exit 5 and the resume command."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkops.sim.server import SimServer
from tests.apply.test_kill_resume import child_env
from tests.cli.ptyrun import spawn
from tests.conftest import start_sim

TWENTY = "startswith(device_name,'gw-0001') or startswith(device_name,'gw-0002')"  # gw-00010 … gw-00029
JOB = (f'name = "canary-debug"\n[target]\nresource = "device"\nfleet = "acme/gateway"\nfilter = "{TWENTY}"\n'
       '[action]\ntype = "set_env"\nname = "CANARY_DEBUG"\nvalue = "1"\n')


@pytest.fixture
def limited() -> Iterator[SimServer]:
    """A simulator whose rate limit the test sets once planning is done (so only the apply meets it)."""
    sim = start_sim()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.mark.timeout(90)
def test_live_display_through_a_terminal(limited: SimServer, tmp_path: Path) -> None:
    """During a 429 pause the terminal shows "waiting for the rate limit: N s" and the 429 count; then the
    limit it learned; at the end 100 % and the summary starting on a line of its own; no JSON anywhere."""
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    term = spawn(["run", str(job)], child_env(limited.url, limited.api_key, tmp_path / "home"))
    term.wait_for(r"Apply these \d+ changes\? \[y/N\] ")
    limited.rate_limiter.set_policy("fixed:6/1s")
    term.send(b"y\r")
    term.wait_for(r"waiting for the rate limit: 1 s")
    term.wait_for(r"429s [1-9]")
    term.wait_for(r"rate \d+\.\d req/s \(learned limit: \d+ per \d+\.\d s\)")
    assert term.finish() == 0
    text = term.text()
    total = re.search(r"targets  (\d+) devices of", text)
    assert total is not None
    assert f"applied {total[1]}/{total[1]} (100%)" in text
    summary = r"\nrun      \S+   job canary-debug   action set_env\nstate    done\n"
    assert re.search(summary, text), text[-2000:]
    assert re.search(r"\nbulkops: \d+ requests sent \(\d+ throttled\) in [\d.]+s: \d+ to plan, \d+ to apply",
                     text)
    assert '{"timestamp"' not in text and "Traceback" not in text


@pytest.mark.timeout(90)
def test_ctrl_c_mid_run_on_a_terminal(limited: SimServer, tmp_path: Path) -> None:
    """Ctrl-C during the run: the stop message above the display, the summary on lines of its own,
    exit 5 and the resume command; no traceback."""
    job = tmp_path / "job.toml"
    job.write_text(JOB + "[options]\nmax_concurrency = 2\n")  # two units in flight finish after the stop
    term = spawn(["run", str(job)], child_env(limited.url, limited.api_key, tmp_path / "home"))
    term.wait_for(r"Apply these \d+ changes\? \[y/N\] ")
    limited.rate_limiter.set_policy("fixed:4/2s")
    term.send(b"y\r")
    term.wait_for(r"waiting for the rate limit: \d s")
    term.interrupt()
    code = term.finish()
    text = term.text()
    assert code == 5, text[-2000:]
    stopping = ("bulkops: stopping: no new requests; waiting for those in flight (Ctrl-C again to stop at"
                " once)")
    assert stopping in text
    summary = r"\nrun      \S+   job canary-debug   action set_env\nstate    interrupted"
    assert re.search(summary, text), text[-2000:]
    assert re.search(r"\nbulkops: continue with `bulkops resume \S+`", text)
    assert "Traceback" not in text and '{"timestamp"' not in text


def test_the_simulator_logs_text_on_a_terminal() -> None:
    """`bulkops sim` on a terminal logs human text (no JSON) and stops cleanly on Ctrl-C."""
    term = spawn(["sim", "--port", "0", "--seed-demo", "10"], child_env("http://127.0.0.1:1", "x", Path("/")))
    term.wait_for(r"BALENA_API_KEY=sim_\w+")
    term.wait_for(r"\[info\s*\] bulkops\.sim\.server\.started\s+devices=10")
    term.interrupt()
    assert term.finish() == 0
    assert '{"timestamp"' not in term.text() and "Traceback" not in term.text()

