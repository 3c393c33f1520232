"""``allow_fleets``: a job limited to an allowlist of fleets is refused when it would touch another fleet —
when the job file is read, when the plan is made (rows selected by the filter), and when a plan file
edited to reach a device of another fleet is applied. A refusal sends no write.

An edited plan file is refused by its seal (tests/plan/test_plan_tamper.py); the edits here are sealed
again with the token, as a holder of the token could, so that the check apply makes on the server — the
fleet of every row the plan writes — is tested on its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from bulkops.errors import ExitCode
from bulkops.sim.server import SimServer
from tests.apply.test_kill_resume import bulkops, child_env, edit_plan_file, make_plan_file, the_run
from tests.conftest import human, rows, writes

ALLOWED = "acme/gateway"


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def job(tmp_path: Path, target: str, action: str, allow: str = f'["{ALLOWED}"]') -> Path:
    path = tmp_path / "job.toml"
    path.write_text(f'name = "fenced"\nallow_fleets = {allow}\n[target]\nresource = "device"\n{target}\n'
                    f"[action]\n{action}\n")
    return path


SET_ENV = 'type = "set_env"\nname = "FENCED"\nvalue = "1"'


def plan_cli(sim: SimServer, tmp_path: Path, job_path: Path) -> tuple[int, str, Path]:
    out = tmp_path / "p.json"
    proc = bulkops(["plan", str(job_path), "-o", str(out)], child_env(sim.url, sim.api_key, tmp_path / "h"))
    return proc.returncode, human(proc.stderr), out


@pytest.mark.parametrize(("filt", "outside"), [
    ("startswith(device_name,'sensor-')", "fleet acme/sensor is"),
    ("startswith(device_name,'gw-') or startswith(device_name,'sensor-')", "fleet acme/sensor is"),
    ("not startswith(device_name,'gw-0')", "fleets acme/gateway-next, acme/sensor are"),
], ids=["other-fleet", "partly-other", "two-others"])
def test_plan_refuses_rows_of_other_fleets(sim: SimServer, tmp_path: Path, filt: str, outside: str) -> None:
    """A filter (no fleet key) that selects devices outside allow_fleets: plan exits 3 naming them,
    writes no plan file and sends no write."""
    code, err, out = plan_cli(sim, tmp_path, job(tmp_path, f'filter = "{filt}"', SET_ENV))
    assert code == ExitCode.REFUSED_BY_GUARD, err
    assert err == f"bulkops: error: {outside} not in allow_fleets ({ALLOWED})\n"
    assert not out.exists() and writes(sim) == []


def test_plan_inside_allowlist_is_accepted(sim: SimServer, tmp_path: Path) -> None:
    """The same job on rows all inside allow_fleets plans normally (the guard is not a blanket no)."""
    code, err, out = plan_cli(sim, tmp_path, job(tmp_path, "filter = \"startswith(device_name,'gw-')\"",
                                                 SET_ENV))
    assert code == ExitCode.OK, err
    assert orjson.loads(out.read_bytes())["fleets"] == [ALLOWED]


@pytest.mark.parametrize(("target", "action", "key", "fleet"), [
    ('fleet = "acme/sensor"', SET_ENV, "target.fleet", "acme/sensor"),
    (f'fleet = "{ALLOWED}"', 'type = "move"\nto_fleet = "acme/gateway-next"', "action.to_fleet",
     "acme/gateway-next"),
], ids=["target-fleet", "move-destination"])
def test_job_naming_another_fleet_is_refused_before_any_request(sim: SimServer, tmp_path: Path, target: str,
                                                               action: str, key: str, fleet: str) -> None:
    """A job whose fleet or move destination is outside its allow_fleets is refused when read (exit 2),
    before any request."""
    path = job(tmp_path, target, action)
    code, err, _ = plan_cli(sim, tmp_path, path)
    assert code == ExitCode.INVALID_INPUT
    assert err == f"bulkops: error: {path}: [{key}] fleet '{fleet}' is not in allow_fleets ({ALLOWED})\n"
    assert sim.request_log.entries() == []


def test_move_within_allowlist_plans(sim: SimServer, tmp_path: Path) -> None:
    """A move between two allowed fleets plans, and its plan names both fleets."""
    path = job(tmp_path, f'fleet = "{ALLOWED}"\nfilter = "startswith(device_name,\'gw-0000\')"',
               'type = "move"\nto_fleet = "acme/gateway-next"', allow=f'["{ALLOWED}", "acme/gateway-next"]')
    code, err, out = plan_cli(sim, tmp_path, path)
    assert code == ExitCode.OK, err
    assert orjson.loads(out.read_bytes())["fleets"] == [ALLOWED, "acme/gateway-next"]


def _sensor_device(sim: SimServer) -> tuple[int, str]:
    fleet = sim.demo.fleets["acme/sensor"]
    device, uuid = rows(sim, "SELECT id, uuid FROM device WHERE belongs_to__application=? "
                             "ORDER BY id LIMIT 1", fleet)[0]
    return int(device), str(uuid)


def _edited_apply(sim: SimServer, tmp_path: Path, edit: Any) -> tuple[int, str]:
    path = job(tmp_path, f'fleet = "{ALLOWED}"', SET_ENV)
    plan_file = tmp_path / "p.json"
    make_plan_file(sim.url, sim.api_key, path, plan_file)
    edit_plan_file(plan_file, edit, sim.api_key)  # sealed again: the server-side check is what is tested
    sim.request_log.clear()
    proc = bulkops(["apply", str(plan_file), "--yes"], child_env(sim.url, sim.api_key, tmp_path / "h"))
    return proc.returncode, human(proc.stderr)


def test_apply_refuses_plan_edited_to_list_another_fleet(sim: SimServer, tmp_path: Path) -> None:
    """A plan file whose fleet list was edited to add a fleet outside allow_fleets is refused at apply."""
    def edit(data: dict[str, Any]) -> None:
        data["fleets"].append("acme/sensor")

    code, err = _edited_apply(sim, tmp_path, edit)
    assert code == ExitCode.REFUSED_BY_GUARD
    assert err == f"bulkops: error: fleet acme/sensor is not in allow_fleets ({ALLOWED})\n"
    assert writes(sim) == [] and the_run(tmp_path / "h") is None


def test_apply_refuses_plan_edited_to_reach_a_device_of_another_fleet(sim: SimServer, tmp_path: Path) -> None:
    """A plan file edited so that one create targets a device of another fleet (its fleet list left as
    it was): apply checks the targets' fleets on the server, refuses with exit 3, and writes nothing."""
    device, uuid = _sensor_device(sim)

    def edit(data: dict[str, Any]) -> None:
        item = next(i for i in data["items"] if i["kind"] == "create")
        item.update(target_id=device, label=uuid)
        item["key"]["device"] = device

    code, err = _edited_apply(sim, tmp_path, edit)
    assert code == ExitCode.REFUSED_BY_GUARD, err
    assert err.startswith("bulkops: error: ") and f"not in allow_fleets ({ALLOWED})" in err, err
    assert "acme/sensor" in err, err
    assert writes(sim) == []
    assert rows(sim, "SELECT COUNT(*) FROM device_environment_variable WHERE name='FENCED'") == [(0,)]


def test_apply_refuses_plan_edited_to_patch_a_row_of_another_fleet(sim: SimServer, tmp_path: Path) -> None:
    """A plan file edited so that one change's row id is a variable of a device in another fleet (target
    id left as it was): apply refuses with exit 3 and that variable keeps its value."""
    device, _ = _sensor_device(sim)
    sim.db.insert("device_environment_variable", {"device": device, "name": "FENCED", "value": "0"})
    (row_id,) = rows(sim, "SELECT id FROM device_environment_variable WHERE device=? AND name='FENCED'",
                     device)[0]
    gateway = sim.demo.fleets[ALLOWED]
    mine = rows(sim, "SELECT id FROM device WHERE belongs_to__application=? ORDER BY id LIMIT 1",
                gateway)[0][0]
    sim.db.insert("device_environment_variable", {"device": mine, "name": "FENCED", "value": "0"})

    def edit(data: dict[str, Any]) -> None:
        item = next(i for i in data["items"] if i["kind"] == "change")
        item["row_id"] = row_id

    code, err = _edited_apply(sim, tmp_path, edit)
    assert code == ExitCode.REFUSED_BY_GUARD, err
    assert f"not in allow_fleets ({ALLOWED})" in err, err
    assert writes(sim) == []
    assert rows(sim, "SELECT value FROM device_environment_variable WHERE id=?", row_id) == [("0",)]


def test_apply_refuses_plan_edited_to_patch_another_target_of_the_same_fleet(sim: SimServer,
                                                                              tmp_path: Path) -> None:
    """A plan file edited so that one change's row id is the variable of another device of the allowed
    fleet: apply refuses it as an edited plan (exit 3) and writes nothing."""
    gateway = sim.demo.fleets[ALLOWED]
    first, second = (r[0] for r in rows(sim, "SELECT id FROM device WHERE belongs_to__application=? "
                                             "ORDER BY id LIMIT 2", gateway))
    for device in (first, second):
        sim.db.insert("device_environment_variable", {"device": device, "name": "FENCED", "value": "0"})
    (other_row,) = rows(sim, "SELECT id FROM device_environment_variable WHERE device=? AND name='FENCED'",
                        second)[0]

    def edit(data: dict[str, Any]) -> None:
        item = next(i for i in data["items"] if i["kind"] == "change" and i["target_id"] == first)
        item["row_id"] = other_row

    code, err = _edited_apply(sim, tmp_path, edit)
    assert code == ExitCode.REFUSED_BY_GUARD, err
    assert err == (f"bulkops: error: the plan writes rows of other targets (device_environment_variable row "
                   f"{other_row} belongs to device {second}, not {first}); the plan file was edited or is "
                   "corrupt: make a new plan\n")
    assert writes(sim) == []
