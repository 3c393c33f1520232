"""The library in a caller's script: silent unless the caller configures logging; once configured
(structlog or the standard library), every event inside a run carries run_id and the job's name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bulkops.sim.server import SimServer

SCRIPT = '''
import json, logging, os, sys
import anyio
import structlog
from bulkops import load_job, make_plan, new_run, open_client, run_plan

MODE = sys.argv[1]
if MODE == "structlog":
    structlog.configure(processors=[structlog.contextvars.merge_contextvars,
                                    structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
elif MODE == "logging":
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(message)s")

async def main() -> None:
    url, key = os.environ["SIM_URL"], os.environ["SIM_KEY"]
    job = load_job(sys.argv[2])
    async with open_client(url, key, job.options) as client:
        plan = await make_plan(job, client, api_url=url)
        journal = new_run(plan)
        summary = await run_plan(plan, client, journal, handle_signals=False)
        journal.close()
    if MODE != "silent":
        sys.stderr.write("RUN " + summary.run_id + "\\n")

anyio.run(main)
'''

JOB = """name = "library-job"
[target]
resource = "device"
fleet = "acme/gateway"
filter = "device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'canary')"
[action]
type = "set_tag"
key = "via"
value = "{v}"
"""


def run_script(sim: SimServer, tmp_path: Path, mode: str, value: str) -> subprocess.CompletedProcess[str]:
    script, job = tmp_path / "script.py", tmp_path / f"{value}.toml"
    script.write_text(SCRIPT)
    job.write_text(JOB.format(v=value))
    env = {"SIM_URL": sim.url, "SIM_KEY": sim.api_key, "BULKOPS_HOME": str(tmp_path / "home"),
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(script), mode, str(job)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.timeout(90)
def test_library_is_silent_then_tagged(sim: SimServer, tmp_path: Path) -> None:
    """Unconfigured, a plan and a run print nothing at all; with structlog or stdlib logging configured,
    the run's events carry run_id and job."""
    silent = run_script(sim, tmp_path, "silent", "a")
    assert (silent.returncode, silent.stdout, silent.stderr) == (0, "", "")

    tagged = run_script(sim, tmp_path, "structlog", "b")
    assert tagged.returncode == 0, tagged.stderr
    lines = tagged.stderr.splitlines()
    run_id = lines[-1].removeprefix("RUN ")
    events = [json.loads(line) for line in lines[:-1]]
    first = next(i for i, e in enumerate(events) if e["event"] == "bulkops.apply.start")
    inside = events[first:]  # every event from the run's start on (its requests included)
    assert len(inside) >= 2
    assert all((e.get("run_id"), e.get("job")) == (run_id, "library-job") for e in inside), (run_id, inside)
    made = next(e for e in events if e["event"] == "bulkops.plan.made")
    assert "run_id" not in made  # planning happens before the run

    std = run_script(sim, tmp_path, "logging", "c")
    assert std.returncode == 0, std.stderr
    run_id = std.stderr.splitlines()[-1].removeprefix("RUN ")
    start = next(line for line in std.stderr.splitlines()
                 if line.startswith("bulkops.apply bulkops.apply.start"))
    assert f"run_id={run_id}" in start and "job=library-job" in start
