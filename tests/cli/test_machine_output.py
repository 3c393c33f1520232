"""Machine output, through the real command in child processes with pipes (no terminal): --json is one
JSON document on stdout for plan, run, apply, runs and report; `-` is stdout; --version works; every
stderr line is a JSON object; the simulator logs the same way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bulkops.cli.main import main
from bulkops.cli.version import version
from bulkops.plan.file import plan_from_json
from bulkops.sim.server import SimServer
from tests.apply.test_kill_resume import bulkops, child_env

CANARIES = "device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'canary')"
JOB = (f'name = "canary-tags"\n[target]\nresource = "device"\nfleet = "acme/gateway"\nfilter = "{CANARIES}"\n'
       '[action]\ntype = "set_tag"\nkey = "channel"\nvalue = "{v}"\n')


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line parsed; fails if one is not a JSON object with timestamp, level and event."""
    out = []
    for line in stderr.splitlines():
        doc = json.loads(line)
        assert isinstance(doc, dict) and {"timestamp", "level", "event"} <= set(doc), line
        out.append(doc)
    return out


def one_document(stdout: str) -> dict[str, Any]:
    doc = json.loads(stdout)  # raises if there is anything after the document
    assert isinstance(doc, dict)
    return doc


@pytest.mark.timeout(120)
def test_json_documents_and_json_stderr(sim: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """plan/run/apply/runs/report --json each print exactly one JSON document; stderr is JSON lines only,
    including the progress events and the request count (planning included)."""
    env = child_env(sim.url, sim.api_key, tmp_path / "home")
    for name in ("BALENA_API_URL", "BALENA_API_KEY", "BULKOPS_HOME"):
        monkeypatch.setenv(name, env[name])  # the same for the commands run in this process
    job = tmp_path / "job.toml"
    job.write_text(JOB.replace("{v}", "beta"))

    plan = bulkops(["plan", str(job), "-o", str(tmp_path / "p.json"), "--json"], env)
    assert plan.returncode == 0, plan.stderr
    preview = one_document(plan.stdout)
    assert preview["job"] == "canary-tags" and preview["counts"]["create"] > 0
    assert [e["event"] for e in json_lines(plan.stderr)] == ["bulkops.plan.written"]

    run = bulkops(["run", str(job), "--json", "--yes"], env)
    assert run.returncode == 0, run.stderr
    doc = one_document(run.stdout)
    assert set(doc) == {"plan", "run"} and doc["run"]["state"] == "done"
    assert doc["run"]["counts"]["applied"] == preview["counts"]["create"]
    events = json_lines(run.stderr)
    names = [e["event"] for e in events]
    assert names[0] == "bulkops.run.started" and names.count("bulkops.apply.progress") >= 2
    count = next(e for e in events if e["event"] == "bulkops.run.requests")
    assert count["plan_requests"] == doc["run"]["requests"]["plan"] > 0
    assert count["requests"] == count["plan_requests"] + count["apply_requests"]
    run_id = doc["run"]["run_id"]

    job.write_text(JOB.replace("{v}", "stable"))
    planned = bulkops(["plan", str(job), "-o", "-"], env)
    assert planned.returncode == 0, planned.stderr
    plan_file = tmp_path / "stdout.plan.json"
    plan_file.write_text(planned.stdout)
    assert plan_from_json(json.loads(planned.stdout)).job_name == "canary-tags"
    assert [e["event"] for e in json_lines(planned.stderr)] == ["bulkops.plan.preview"]
    in_process(["apply", str(plan_file), "--yes", "--json", "--force"], capsys, keys={"run"})
    listing = in_process(["runs", "--json"], capsys, keys={"runs_dir", "runs"})
    assert listing["runs"][0]["run_id"] == run_id
    report = in_process(["report", run_id, "--json"], capsys, keys=None)
    assert report["run_id"] == run_id and len(report["items"]) == doc["run"]["total"]
    assert main(["report", run_id, "--csv", "-"]) == 0
    table = capsys.readouterr()
    assert table.out.splitlines()[0].startswith("index,id,label,kind") and table.err == ""
    assert len(table.out.splitlines()) == doc["run"]["total"] + 1


def in_process(args: list[str], capsys: pytest.CaptureFixture[str], keys: set[str] | None) -> dict[str, Any]:
    """The command in this process (stdout and stderr captured, no terminal): one document on stdout."""
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    json_lines(captured.err)
    doc = one_document(captured.out)
    assert keys is None or set(doc) == keys
    return doc


def test_errors_are_json_lines_off_a_terminal(sim: SimServer, tmp_path: Path) -> None:
    """An error off a terminal is one JSON line with level, message and exit code; --version prints it."""
    env = child_env(sim.url, sim.api_key, tmp_path / "home")
    bad = bulkops(["plan", str(tmp_path / "missing.toml")], env)
    assert bad.returncode == 2 and bad.stdout == ""
    (line,) = json_lines(bad.stderr)
    assert (line["level"], line["event"], line["exit_code"], line["kind"]) == (
        "error", "bulkops.cli.error", 2, "JobFileError")
    missing = tmp_path / "missing.toml"
    assert line["message"] == f"{missing}: cannot read the job file: No such file or directory"
    shown = bulkops(["--version"], env)
    assert (shown.returncode, shown.stdout) == (0, f"bulkops {version()}\n")


def test_the_simulator_logs_json_off_a_terminal(tmp_path: Path) -> None:
    """`bulkops sim` off a terminal prints its two eval-able lines on stdout and JSON log events on
    stderr (its start included), until SIGINT."""
    proc = subprocess.Popen([sys.executable, "-m", "bulkops", "sim", "--port", "0", "--seed-demo", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("BALENA_API_URL=http://127.0.0.1:")
        assert proc.stdout.readline().startswith("BALENA_API_KEY=")
    finally:
        proc.send_signal(2)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    events = json_lines(err)
    started = next(e for e in events if e["event"] == "bulkops.sim.server.started")
    assert started["url"] == first.strip().split("=", 1)[1] and started["devices"] == 10
