"""A plan file is sealed: any edit of a guard field or an item is refused at apply, before any request.

The seal is an HMAC of the plan's whole content keyed by the API token, so only a holder of the token can
make a plan that apply accepts. The job path is stored absolute; ``--force`` waives only a job file
that is gone, never ``allow_fleets``; ``resume`` checks the run's plan and the guards again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
import structlog

from bulkops.apply.runner import new_run, open_client
from bulkops.cli.main import main
from bulkops.errors import ExitCode, GuardError
from bulkops.job.load import load_job
from bulkops.model import Action, ActionType, ChangeKind, Expect, Plan, PlanItem
from bulkops.plan.file import read_plan, write_plan
from bulkops.plan.make import make_plan
from bulkops.plan.seal import check_seal, seal_plan
from bulkops.sim.server import SimServer
from tests.apply.test_kill_resume import bulkops, child_env
from tests.conftest import human, rows, writes

ALLOWED = "acme/gateway"
JOB = f"""\
name = "sealed"
allow_fleets = ["{ALLOWED}"]
[target]
resource = "device"
fleet = "{ALLOWED}"
expect = {{ max = 2000 }}
[action]
type = "set_env"
name = "SEALED"
value = "1"
"""
# the same job on about 10 devices
SMALL_JOB = JOB.replace(f'fleet = "{ALLOWED}"\n',
                        f'fleet = "{ALLOWED}"\nfilter = "startswith(device_name,\'gw-0001\')"\n')
EDITED = ("bulkops: error: the plan {plan_id} does not match its seal: it was changed after it was made, "
          "or made with another API token; make a new plan\n")


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _plan(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str = JOB) -> tuple[Path, Path]:
    job = tmp_path / "job.toml"
    job.write_text(text)
    plan = tmp_path / "p.json"
    assert main(["plan", str(job), "-o", str(plan)]) == ExitCode.OK
    capsys.readouterr()
    return job, plan


def _edit(path: Path, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    edit(data)
    path.write_bytes(orjson.dumps(data))
    return data


def _sensor_device(sim: SimServer) -> tuple[int, str]:
    device, uuid = rows(sim, "SELECT id, uuid FROM device WHERE belongs_to__application=? "
                             "ORDER BY id LIMIT 1", sim.demo.fleets["acme/sensor"])[0]
    return int(device), str(uuid)


def _future(data: dict[str, Any]) -> None:
    data["created_at"] = (datetime.now(UTC) + timedelta(days=30)).isoformat()


def _moved_to_sensor(sim: SimServer) -> Callable[[dict[str, Any]], None]:
    device, uuid = _sensor_device(sim)

    def edit(data: dict[str, Any]) -> None:
        data["allow_fleets"] = []
        item = next(i for i in data["items"] if i["kind"] == "create")
        item.update(target_id=device, label=uuid)
        item["key"]["device"] = device
    return edit


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "allow_fleets-emptied": lambda d: d.update(allow_fleets=[]),
    "max_plan_age-raised": lambda d: d["options"].update(max_plan_age=10.0 ** 9),
    "job_path-blanked": lambda d: d.update(job_path="", job_fingerprint=""),
    "created_at-in-the-future": _future,
    "expect-max-raised": lambda d: d["expect"].update(max=10 ** 6),
    "batch_size-changed": lambda d: d["options"].update(batch_size=7),
    "item-value-changed": lambda d: d["items"][0]["after"].update(value="evil"),
    "item-removed": lambda d: d["items"].pop(),
    "item-added": lambda d: d["items"].append({**d["items"][0], "target_id": d["items"][0]["target_id"] + 1}),
}


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_edited_plan_is_refused_before_any_request(env: SimServer, tmp_path: Path, edit: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Any edit of a guard field or an item of a plan file: apply exits 3 naming the seal; no request."""
    _, plan = _plan(tmp_path, capsys)
    data = _edit(plan, EDITS[edit])
    env.request_log.clear()
    assert main(["apply", str(plan), "--yes"]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == EDITED.format(plan_id=data["plan_id"])
    assert env.request_log.entries() == []
    assert not (Path(os.environ["BULKOPS_HOME"]) / "runs").exists()


def test_allowlist_emptied_and_item_moved_to_another_fleet_is_refused(
        env: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The attack the seal stops: allow_fleets emptied and a create aimed at a device of another fleet;
    apply exits 3 and that device gets nothing."""
    _, plan = _plan(tmp_path, capsys)
    data = _edit(plan, _moved_to_sensor(env))
    env.request_log.clear()
    assert main(["apply", str(plan), "--yes"]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == EDITED.format(plan_id=data["plan_id"])
    assert writes(env) == []
    assert rows(env, "SELECT COUNT(*) FROM device_environment_variable WHERE name='SEALED'") == [(0,)]


def test_plan_without_a_seal_is_refused(env: SimServer, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A plan file whose seal was removed is refused (exit 3) with what to do; nothing is sent."""
    _, plan = _plan(tmp_path, capsys)
    data = _edit(plan, lambda d: d.pop("seal"))
    env.request_log.clear()
    assert main(["apply", str(plan), "--yes"]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == (
        f"bulkops: error: the plan {data['plan_id']} has no seal, so an edit of it could not be detected; "
        "make a new plan with `bulkops plan`\n")
    assert env.request_log.entries() == []


def test_plan_applied_with_another_token_is_refused(env: SimServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A plan made with one API key and applied with another key of the same user does not match its seal
    (exit 3, nothing sent): a plan is applied with the token it was made with."""
    _, plan = _plan(tmp_path, capsys)
    cols = [c[1] for c in env.db.conn.execute("PRAGMA table_info(api_key)")]
    row = dict(zip(cols, env.db.conn.execute("SELECT * FROM api_key WHERE key=?", (env.api_key,)).fetchone(),
                   strict=True))
    row.update(id=None, key="sim_second_key_of_the_demo_user_0123")
    env.db.conn.execute(f"INSERT INTO api_key ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                        [row[c] for c in cols])
    monkeypatch.setenv("BALENA_API_KEY", "sim_second_key_of_the_demo_user_0123")
    env.request_log.clear()
    assert main(["apply", str(plan), "--yes"]) == ExitCode.REFUSED_BY_GUARD
    plan_id = orjson.loads(plan.read_bytes())["plan_id"]
    assert human(capsys.readouterr().err) == EDITED.format(plan_id=plan_id)
    assert env.request_log.entries() == []


def _library_plan(sim: SimServer, job_path: Path, now: datetime) -> Plan:
    job = load_job(job_path)

    async def go() -> Plan:
        async with open_client(sim.url, sim.api_key, job.options) as client:
            return await make_plan(job, client, api_url=sim.url, now=now)

    return seal_plan(anyio.run(go), sim.api_key)


def test_plan_dated_in_the_future_is_refused(env: SimServer, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A sealed plan dated an hour ahead (a clock set wrong where it was made) is refused (exit 3): its
    age could not be judged."""
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    plan = _library_plan(env, job, datetime.now(UTC) + timedelta(hours=1))
    path = tmp_path / "p.json"
    write_plan(plan, path)
    env.request_log.clear()
    assert main(["apply", str(path), "--yes"]) == ExitCode.REFUSED_BY_GUARD
    err = human(capsys.readouterr().err)
    assert err.startswith(f"bulkops: error: the plan is dated {plan.created_at:%Y-%m-%d %H:%M:%S} UTC, "), err
    assert err.endswith(" in the future; check the clock of the machine that made it, then make a new plan\n")
    assert env.request_log.entries() == []


def test_plan_applied_from_another_directory_finds_its_job(sim: SimServer, tmp_path: Path) -> None:
    """A plan made with a relative job path stores it absolute; applied from another directory it finds
    the job file and is applied (exit 0)."""
    made, elsewhere = tmp_path / "made", tmp_path / "elsewhere"
    made.mkdir()
    elsewhere.mkdir()
    (made / "job.toml").write_text(JOB)
    env = child_env(sim.url, sim.api_key, tmp_path / "home")
    planned = bulkops(["plan", "job.toml", "-o", "p.json"], env, cwd=made)
    assert planned.returncode == ExitCode.OK, planned.stderr
    assert orjson.loads((made / "p.json").read_bytes())["job_path"] == str(made / "job.toml")
    applied = bulkops(["apply", "../made/p.json", "--yes"], env, cwd=elsewhere)
    assert applied.returncode == ExitCode.OK, applied.stderr
    fleet = sim.demo.fleets[ALLOWED]
    assert rows(sim, "SELECT COUNT(*) FROM device_environment_variable v JOIN device d ON d.id=v.device "
                     "WHERE v.name='SEALED' AND d.belongs_to__application=?", fleet) == \
        rows(sim, "SELECT COUNT(*) FROM device WHERE belongs_to__application=?", fleet)


def test_force_with_the_job_gone_does_not_lift_allow_fleets(env: SimServer, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """--force (the job file is gone) with allow_fleets emptied in the plan and an item aimed at another
    fleet: refused by the seal (exit 3), nothing written."""
    job, plan = _plan(tmp_path, capsys)
    job.unlink()
    data = _edit(plan, _moved_to_sensor(env))
    env.request_log.clear()
    assert main(["apply", str(plan), "--yes", "--force"]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == EDITED.format(plan_id=data["plan_id"])
    assert writes(env) == []


def test_force_still_refuses_a_target_moved_to_another_fleet(env: SimServer, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--force with the job file gone and an unedited plan whose target was moved to another fleet since
    it was made: apply reads the targets' fleets, exits 3 naming the fleet, writes nothing."""
    job, plan = _plan(tmp_path, capsys)
    job.unlink()
    target = orjson.loads(plan.read_bytes())["items"][0]["target_id"]
    env.db.conn.execute("UPDATE device SET belongs_to__application=? WHERE id=?",
                        (env.demo.fleets["acme/sensor"], target))
    env.request_log.clear()
    assert main(["apply", str(plan), "--yes", "--force"]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == (
        f"bulkops: error: fleet acme/sensor is not in allow_fleets ({ALLOWED})\n")
    assert writes(env) == []


# --- resume ----------------------------------------------------------------------------------------


def _planned_run(sim: SimServer, tmp_path: Path, *, text: str = JOB, now: datetime | None = None) -> Path:
    """A run created from a sealed plan and not started yet (as a kill right after creation leaves it)."""
    job = tmp_path / "job.toml"
    job.write_text(text)
    journal = new_run(_library_plan(sim, job, now or datetime.now(UTC)))
    journal.close()
    return journal.run_dir


def test_resume_refuses_a_run_whose_plan_was_edited(env: SimServer, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The run's copy of the plan edited (allowlist emptied, an item aimed at another fleet): resume
    exits 3 and writes nothing."""
    run_dir = _planned_run(env, tmp_path)
    _edit(run_dir / "plan.json", _moved_to_sensor(env))
    env.request_log.clear()
    assert main(["resume", run_dir.name]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == (
        f"bulkops: error: the plan of run {run_dir.name} is not the plan the run was created from "
        f"({run_dir / 'plan.json'} was changed); make a new plan\n")
    assert writes(env) == []
    assert rows(env, "SELECT COUNT(*) FROM device_environment_variable WHERE name='SEALED'") == [(0,)]


def test_resume_refuses_when_the_job_file_changed(env: SimServer, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """resume checks the guards of apply: a job file changed since the plan refuses it (exit 3)."""
    run_dir = _planned_run(env, tmp_path)
    job = tmp_path / "job.toml"
    job.write_text(JOB.replace('value = "1"', 'value = "2"'))
    env.request_log.clear()
    assert main(["resume", run_dir.name]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == (
        f"bulkops: error: the job file {job} changed since the plan was made; make a new plan\n")
    assert env.request_log.entries() == []


def test_resume_is_not_refused_for_the_age_of_its_plan(env: SimServer, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A run may wait (a long Retry-After, a manual approval): resume of a run whose plan is older than
    max_plan_age goes on (exit 0), where apply of that plan is refused."""
    stale = datetime.now(UTC) - timedelta(hours=25)
    run_dir = _planned_run(env, tmp_path, text=SMALL_JOB, now=stale)
    plan_file = tmp_path / "stale.json"
    write_plan(_library_plan(env, tmp_path / "job.toml", stale), plan_file)
    assert main(["apply", str(plan_file), "--yes"]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == (
        "bulkops: error: the plan is 25.0h old; plans older than 24.0h are refused (make a new plan)\n")
    assert main(["resume", run_dir.name]) == ExitCode.OK
    n = len(orjson.loads((run_dir / "plan.json").read_bytes())["items"])
    assert rows(env, "SELECT COUNT(*) FROM device_environment_variable WHERE name='SEALED'") == [(n,)]


def test_resume_refuses_a_target_moved_to_another_fleet(env: SimServer, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """resume reads the fleets of the run's targets again: one moved to a fleet outside allow_fleets since
    the plan refuses the run (exit 3), nothing written."""
    run_dir = _planned_run(env, tmp_path, text=SMALL_JOB)
    target = orjson.loads((run_dir / "plan.json").read_bytes())["items"][0]["target_id"]
    env.db.conn.execute("UPDATE device SET belongs_to__application=? WHERE id=?",
                        (env.demo.fleets["acme/sensor"], target))
    env.request_log.clear()
    assert main(["resume", run_dir.name]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == (
        f"bulkops: error: fleet acme/sensor is not in allow_fleets ({ALLOWED})\n")
    assert writes(env) == []


def test_resume_with_the_job_gone_needs_force(env: SimServer, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """resume of a run whose job file is gone is refused (exit 3) unless --force, which then completes it."""
    run_dir = _planned_run(env, tmp_path, text=SMALL_JOB)
    job = tmp_path / "job.toml"
    job.unlink()
    assert main(["resume", run_dir.name]) == ExitCode.REFUSED_BY_GUARD
    assert human(capsys.readouterr().err) == (
        f"bulkops: error: the job file {job} is gone, so the plan cannot be checked against it; use --force "
        "to apply it anyway\n")
    assert writes(env) == []
    assert main(["resume", run_dir.name, "--force"]) == ExitCode.OK
    n = len(orjson.loads((run_dir / "plan.json").read_bytes())["items"])
    assert 5 <= n <= 20
    assert rows(env, "SELECT COUNT(*) FROM device_environment_variable WHERE name='SEALED'") == [(n,)]


def test_seal_survives_the_plan_file_round_trip(tmp_path: Path) -> None:
    """A sealed plan with every field set, written and read back, matches its seal; the same file checked
    with another token does not, and the token is nowhere in it."""
    items = (
        PlanItem(1, "ü-1", ChangeKind.CHANGE, "device_environment_variable", 11, {"value": "it's \"x\"\n"},
                 {"value": "y"}, {"device": 1, "name": "V"}, stage=2),
        PlanItem(2, "u-2", ChangeKind.CREATE, "device_environment_variable", None, None, {"value": "1.50"},
                 {"device": 2, "name": "V"}),
        PlanItem(3, "u-3", ChangeKind.DELETE, "device", 3, {"is_online": False, "note": None}, None),
    )
    plan = Plan(job_name="j", job_path="jobs/j.toml", job_fingerprint="ab" * 32, api_url="http://127.0.0.1:1",
                created_at=datetime(2026, 11, 27, 8, 0, 0, 123456, tzinfo=UTC), target_resource="device",
                compiled_filter="belongs_to__application in (1)",
                action=Action(ActionType.SET_ENV, name="V", value="y"), items=items, population=3,
                expect=Expect(1, 10, 0.25), allow_fleets=("acme/gateway",), warnings=("w",),
                irreversible=True, plan_id="20261127T080000Z-abcdef", fleets=("acme/gateway",),
                fleet_ids={"acme/gateway": 1}, undo_of="r1")
    sealed = seal_plan(plan, "the-token-0123456789")
    assert sealed.job_path == os.path.abspath("jobs/j.toml")
    path = tmp_path / "p.json"
    write_plan(sealed, path)
    back = read_plan(path)
    assert back == sealed
    check_seal(back, "the-token-0123456789")
    with pytest.raises(GuardError):
        check_seal(back, "another-token-0123456789")
    assert b"the-token-0123456789" not in path.read_bytes()
