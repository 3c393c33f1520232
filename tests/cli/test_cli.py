"""The bulkops command in-process: validate, plan, apply, run, runs, report, exit codes, files."""

from __future__ import annotations

import io
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from bulkops.cli.commands import confirm
from bulkops.cli.main import main
from bulkops.errors import ExitCode, GuardError
from bulkops.model import Action, ActionType, ChangeKind, Expect, Plan, PlanItem
from bulkops.sim.server import SimServer
from tests.conftest import human, rows

CANARY_JOB = """\
name = "debug-canaries"
allow_fleets = ["acme/gateway"]

[target]
resource = "device"
fleet = "acme/gateway"
filter = "device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'canary')"
expect = { min = 1, max = 500, max_share = "10%" }

[action]
type = "set_env"
name = "LOG_LEVEL"
value = "debug"
"""


def env_home(sim: SimServer) -> Path:
    return Path(os.environ["BULKOPS_HOME"])


def write_job(tmp_path: Path, text: str = CANARY_JOB, name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_validate_ok_and_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate exits 0 for a good job and 2 with one error line for a bad one."""
    assert main(["validate", str(write_job(tmp_path))]) == ExitCode.OK
    assert "ok — debug-canaries: set_env on device" in capsys.readouterr().out
    bad = write_job(tmp_path, CANARY_JOB.replace('type = "set_env"', 'type = "explode"'), "bad.toml")
    assert main(["validate", str(bad)]) == ExitCode.INVALID_INPUT
    err = human(capsys.readouterr().err)
    assert err.startswith(f"bulkops: error: {bad}: [action.type]") and err.count("\n") == 1


def test_plan_writes_private_file_without_token(env: SimServer, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """plan writes a 0600 plan file that never contains the token, and previews it."""
    out = tmp_path / "p.json"
    assert main(["plan", str(write_job(tmp_path)), "-o", str(out)]) == ExitCode.OK
    text = capsys.readouterr().out
    assert "counts   change" in text and "warning  " in text and "will restart services" in text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    raw = out.read_bytes()
    assert env.api_key.encode() not in raw
    data = orjson.loads(raw)
    assert data["api_url"] == env.url and data["counts"]["change"] + data["counts"]["create"] > 0


def test_plan_json_preview(env: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """plan --json prints the preview as JSON with counts, filter and samples."""
    assert main(["plan", str(write_job(tmp_path)), "-o", str(tmp_path / "p.json"), "--json"]) == ExitCode.OK
    data = orjson.loads(capsys.readouterr().out)
    assert data["filter"].startswith("belongs_to__application in (")
    assert set(data["counts"]) == {"change", "create", "delete", "noop"} and 0 < len(data["samples"]) <= 10


def test_apply_needs_yes_without_terminal(env: SimServer, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Without a terminal, apply refuses (exit 3) unless --yes is given."""
    plan = tmp_path / "p.json"
    assert main(["plan", str(write_job(tmp_path)), "-o", str(plan)]) == ExitCode.OK
    capsys.readouterr()
    assert main(["apply", str(plan)]) == ExitCode.REFUSED_BY_GUARD
    err = human(capsys.readouterr().err)
    assert err.startswith("bulkops: error: no terminal to confirm ")
    assert err.rstrip().endswith("changes: pass --yes to apply them without asking")
    assert main(["apply", str(plan), "--yes"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "state    done" in out and "failed 0" in out


def test_apply_refuses_changed_job(env: SimServer, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A plan whose job file changed since is refused with exit 3 and nothing is written."""
    job = write_job(tmp_path)
    plan = tmp_path / "p.json"
    assert main(["plan", str(job), "-o", str(plan)]) == ExitCode.OK
    capsys.readouterr()
    job.write_text(CANARY_JOB.replace('"debug"', '"trace"'))
    before = len(env.request_log.entries())
    assert main(["apply", str(plan), "--yes"]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == (
        f"bulkops: error: the job file {job} changed since the plan was made; make a new plan\n")
    assert len(env.request_log.entries()) == before


def test_expect_guard_refuses_at_plan_time(env: SimServer, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """expect.max below the target count stops planning with exit 3 and the numbers."""
    job = write_job(tmp_path, CANARY_JOB.replace("max = 500", "max = 2"))
    assert main(["plan", str(job), "-o", str(tmp_path / "p.json")]) == ExitCode.REFUSED_BY_GUARD
    err = human(capsys.readouterr().err)
    assert err.startswith("bulkops: error: expect.max is 2 but the job targets ") and "devices" in err


def test_unknown_fleet_is_not_found(env: SimServer, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A fleet slug that resolves to nothing fails before any target is read."""
    job = write_job(tmp_path, CANARY_JOB.replace('fleet = "acme/gateway"', 'fleet = "acme/nope"')
                    .replace('allow_fleets = ["acme/gateway"]', ""))
    assert main(["plan", str(job)]) == ExitCode.RUN_FAILED
    assert human(capsys.readouterr().err) == (
        "bulkops: error: fleet 'acme/nope' not found (or not visible to this API key)\n")


def test_run_runs_report(env: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """run --yes applies; runs lists the run; report writes CSV and JSON with one row per target."""
    assert main(["run", str(write_job(tmp_path)), "--yes"]) == ExitCode.OK
    capsys.readouterr()
    assert main(["runs"]) == ExitCode.OK
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].startswith("RUN ") and len(listing) == 2 and " done " in listing[1]
    run_id = listing[1].split()[0]
    run_dir = env_home(env) / "runs" / run_id
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    for f in run_dir.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert env.api_key.encode() not in f.read_bytes(), f
    csv_path, json_path = tmp_path / "r.csv", tmp_path / "r.json"
    assert main(["report", run_id, "--csv", str(csv_path), "--json", str(json_path)]) == ExitCode.OK
    data = orjson.loads(json_path.read_bytes())
    assert data["state"] == "done" and len(data["items"]) == data["total"]
    assert csv_path.read_text().splitlines()[0] == (
        "index,id,label,kind,resource,row_id,before,after,outcome,status,attempts,error")
    assert len(csv_path.read_text().splitlines()) == data["total"] + 1
    fleet = env.demo.fleets["acme/gateway"]
    canaries = rows(env, "SELECT COUNT(*) FROM device d JOIN device_tag t ON t.device=d.id "
                         "AND t.tag_key='ring' "
                         "AND t.value='canary' JOIN device_environment_variable v ON v.device=d.id AND "
                         "v.name='LOG_LEVEL' AND v.value='debug' WHERE d.belongs_to__application=?", fleet)
    assert canaries[0][0] == data["total"]


def test_destructive_without_terminal_needs_expect_max(env: SimServer, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A delete with --yes but no terminal and no expect.max is refused (exit 3)."""
    job = write_job(tmp_path, '''name = "cleanup"
[target]
resource = "device"
fleet = "acme/sensor"
offline_for = "90d"
[action]
type = "delete"
''')
    assert main(["run", str(job), "--yes"]) == ExitCode.REFUSED_BY_GUARD
    err = human(capsys.readouterr().err)
    assert "without a terminal this needs expect.max in the job file" in err


def test_failed_targets_exit_1_and_are_reported(env: SimServer, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A target deleted between plan and apply fails its create: exit 1, the report names it."""
    job = write_job(tmp_path, CANARY_JOB.replace('"LOG_LEVEL"', '"CANARY_ONLY"'))
    plan_path = tmp_path / "p.json"
    assert main(["plan", str(job), "-o", str(plan_path)]) == ExitCode.OK
    plan = orjson.loads(plan_path.read_bytes())
    victim = plan["items"][0]
    assert victim["kind"] == "create"
    env.db.conn.execute("DELETE FROM device_tag WHERE device=?", (victim["target_id"],))
    env.db.conn.execute("DELETE FROM device WHERE id=?", (victim["target_id"],))
    capsys.readouterr()
    assert main(["apply", str(plan_path), "--yes"]) == ExitCode.SOME_FAILED
    out = capsys.readouterr().out
    assert f"applied {len(plan['items']) - 1}" in out and "failed 1" in out
    assert f"  failed {victim['label']} HTTP " in out


def test_retry_failed_plans_only_what_is_left(env: SimServer, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """plan --retry-failed RUN re-plans the failed targets still as planned, then applies cleanly."""
    job = write_job(tmp_path, CANARY_JOB.replace('"LOG_LEVEL"', '"CANARY_ONLY"'))
    plan_path = tmp_path / "p.json"
    assert main(["plan", str(job), "-o", str(plan_path)]) == ExitCode.OK
    victim = orjson.loads(plan_path.read_bytes())["items"][0]
    tags = rows(env, "SELECT * FROM device_tag WHERE device=?", victim["target_id"])
    device = rows(env, "SELECT * FROM device WHERE id=?", victim["target_id"])
    env.db.conn.execute("DELETE FROM device_tag WHERE device=?", (victim["target_id"],))
    env.db.conn.execute("DELETE FROM device WHERE id=?", (victim["target_id"],))
    assert main(["apply", str(plan_path), "--yes"]) == ExitCode.SOME_FAILED
    run_id = human(capsys.readouterr().err).split("bulkops: run ")[1].split()[0]
    env.db.conn.execute(f"INSERT INTO device VALUES ({','.join('?' * len(device[0]))})", device[0])
    for tag in tags:
        env.db.conn.execute(f"INSERT INTO device_tag VALUES ({','.join('?' * len(tag))})", tag)
    retry = tmp_path / "retry.json"
    assert main(["plan", "--retry-failed", run_id, "-o", str(retry), "--json"]) == ExitCode.OK
    preview = orjson.loads(capsys.readouterr().out)
    assert preview["counts"] == {"change": 0, "create": 1, "delete": 0, "noop": 0}
    assert main(["apply", str(retry), "--yes"]) == ExitCode.OK
    assert rows(env, "SELECT value FROM device_environment_variable WHERE device=? AND name='CANARY_ONLY'",
                victim["target_id"]) == [("debug",)]


def _delete_plan(n: int) -> Plan:
    items = tuple(PlanItem(i, f"u{i}", ChangeKind.DELETE, "device", i, {}, None) for i in range(n))
    return Plan(job_name="j", job_path="", job_fingerprint="", api_url="http://127.0.0.1:1",
                created_at=datetime.now(UTC), target_resource="device", compiled_filter="",
                action=Action(ActionType.DELETE), items=items, population=n, expect=Expect(max=n))


def test_confirm_on_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """On a terminal, deletions above the threshold need the count typed back; others a yes."""
    monkeypatch.setattr("sys.stdin", io.StringIO("12\n"))
    confirm(_delete_plan(12), yes=False, stdin_tty=True)
    assert "Type 12 to go on: " in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    with pytest.raises(GuardError) as exc:
        confirm(_delete_plan(12), yes=False, stdin_tty=True)
    assert str(exc.value) == "the typed count did not match: nothing was applied"
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    confirm(_delete_plan(3), yes=False, stdin_tty=True)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    with pytest.raises(GuardError) as exc:
        confirm(_delete_plan(3), yes=False, stdin_tty=True)
    assert str(exc.value) == "not confirmed: nothing was applied"
    confirm(_delete_plan(12), yes=True, stdin_tty=False)  # expect.max is set


def test_allowlist_covers_every_matched_fleet(env: SimServer, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A filter that matches devices of a fleet outside allow_fleets is refused at plan time (exit 3)."""
    job = write_job(tmp_path, """name = "notes"
allow_fleets = ["acme/gateway"]
[target]
resource = "device"
filter = "startswith(device_name,'gw')"
[action]
type = "patch"
fields = { note = "x" }
""")
    assert main(["plan", str(job), "-o", str(tmp_path / "p.json")]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == (
        "bulkops: error: fleet acme/gateway-next is not in allow_fleets (acme/gateway)\n")
    assert not (tmp_path / "p.json").exists()
    assert [e for e in env.request_log.entries() if e.method != "GET"] == []


def test_undo_command_then_apply(env: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """undo RUN previews and writes an undo plan; applying it restores every canary's LOG_LEVEL."""
    fleet = env.demo.fleets["acme/gateway"]
    query = ("SELECT d.id, v.value FROM device d LEFT JOIN device_environment_variable v ON v.device=d.id "
             "AND v.name='LOG_LEVEL' WHERE d.belongs_to__application=? ORDER BY d.id")
    original = rows(env, query, fleet)
    assert main(["run", str(write_job(tmp_path)), "--yes"]) == ExitCode.OK
    run_id = human(capsys.readouterr().err).split("bulkops: run ")[1].split()[0]
    undo = tmp_path / "undo.json"
    assert main(["undo", run_id, "-o", str(undo)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"action   undo of run {run_id}: set_env LOG_LEVEL=debug on device" in out
    assert main(["apply", str(undo), "--yes"]) == ExitCode.OK
    assert rows(env, query, fleet) == original


def test_run_with_nothing_to_do_starts_no_run(env: SimServer, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """run of a job whose targets are all already as wanted applies nothing and records no run."""
    job = write_job(tmp_path)
    assert main(["run", str(job), "--yes"]) == ExitCode.OK
    capsys.readouterr()
    before = sorted((env_home(env) / "runs").iterdir())
    assert main(["run", str(job), "--yes"]) == ExitCode.OK
    captured = capsys.readouterr()
    assert "counts   change 0   create 0   delete 0" in captured.out
    assert "bulkops: nothing to apply; no run was started" in human(captured.err)
    assert sorted((env_home(env) / "runs").iterdir()) == before
