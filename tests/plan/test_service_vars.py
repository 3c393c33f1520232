"""Device service variables end to end against the simulator: planned through service installs, applied,
re-planned as no-ops, changed, removed, undone; devices without the service left out; an edited plan that
points at another device's install refused; the simulator answering with balena's rules."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkops.cli.main import main
from bulkops.errors import ExitCode
from bulkops.sim.server import SimServer
from tests.apply.test_kill_resume import edit_plan_file
from tests.conftest import human, rows

CANARIES = "device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'canary')"


def job(tmp_path: Path, action: str, *, allow: str = "", name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'name = "svc"\n{allow}\n[target]\nresource = "device"\nfleet = "acme/gateway"\n'
                    f'filter = "{CANARIES}"\nexpect = {{ max = 100 }}\n[action]\n{action}\n')
    return path


SET = 'type = "set_service_env"\nservice = "main"\nname = "LOG_LEVEL"\nvalue = "{v}"'


def service_vars(sim: SimServer, service: str = "main") -> dict[int, str]:
    """device id → LOG_LEVEL of its install of ``service`` (in its own fleet)."""
    found = rows(sim, "SELECT si.device, v.value FROM device_service_environment_variable v "
                      "JOIN service_install si ON si.id = v.service_install "
                      "JOIN service s ON s.id = si.installs__service WHERE v.name = 'LOG_LEVEL' "
                      "AND s.service_name = ?", service)
    return dict(found)


def canaries(sim: SimServer) -> set[int]:
    found = rows(sim, "SELECT d.id FROM device d JOIN device_tag t ON t.device = d.id AND t.tag_key = 'ring' "
                      "AND t.value = 'canary' WHERE d.belongs_to__application = ?",
                 sim.demo.fleets["acme/gateway"])
    return {r[0] for r in found}


def test_set_change_noop_remove_and_undo(env: SimServer, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """set_service_env creates one row per device install of the service; again it is all no-ops; a new
    value changes them; remove_service_env deletes them; the undo of the removal brings them back."""
    targets = canaries(env)
    assert main(["run", str(job(tmp_path, SET.format(v="debug"))), "--yes"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"counts   change 0   create {len(targets)}   delete 0   noop 0" in out
    assert f"warning  {len(targets)} devices will restart service 'main'" in out
    assert service_vars(env) == dict.fromkeys(targets, "debug")
    assert service_vars(env, "agent") == {}
    posts = [e for e in env.request_log.entries() if e.method == "POST"]
    assert len(posts) == len(targets) and all("device_service_environment_variable" in e.url for e in posts)

    assert main(["plan", str(job(tmp_path, SET.format(v="debug"))), "-o", str(tmp_path / "p.json")]) == 0
    assert f"counts   change 0   create 0   delete 0   noop {len(targets)}" in capsys.readouterr().out

    assert main(["run", str(job(tmp_path, SET.format(v="trace"))), "--yes"]) == ExitCode.OK
    assert f"change {len(targets)}" in capsys.readouterr().out
    assert service_vars(env) == dict.fromkeys(targets, "trace")

    remove = 'type = "remove_service_env"\nservice = "main"\nname = "LOG_LEVEL"'
    assert main(["run", str(job(tmp_path, remove)), "--yes"]) == ExitCode.OK
    run_id = human(capsys.readouterr().err).split("bulkops: run ")[1].split()[0]
    assert service_vars(env) == {}
    assert main(["undo", run_id, "-o", str(tmp_path / "undo.json")]) == ExitCode.OK
    assert main(["apply", str(tmp_path / "undo.json"), "--yes"]) == ExitCode.OK
    assert service_vars(env) == dict.fromkeys(targets, "trace")


def test_devices_without_the_service_are_left_out(env: SimServer, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A device with no install of the service is not in the plan, and the preview says how many."""
    targets = sorted(canaries(env))
    env.db.conn.execute(
        "DELETE FROM service_install WHERE device = ? AND installs__service IN "
        "(SELECT id FROM service WHERE service_name = 'main')", (targets[0],))
    assert main(["plan", str(job(tmp_path, SET.format(v="debug"))), "-o", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert ("warning  1 device of the selection has no install of service 'main' (another release, or none"
            " yet): left out") in out.splitlines()
    items = orjson.loads((tmp_path / "p.json").read_bytes())["items"]
    assert sorted(i["target_id"] for i in items) == targets[1:]
    assert {i["resource"] for i in items} == {"device_service_environment_variable"}
    installs = dict(rows(env, "SELECT si.device, si.id FROM service_install si JOIN service s ON "
                              "s.id = si.installs__service WHERE s.service_name = 'main'"))
    assert all(i["key"] == {"service_install": installs[i["target_id"]], "name": "LOG_LEVEL"} for i in items)


def test_an_edited_install_is_refused_at_apply(env: SimServer, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """With allow_fleets, apply checks each item's install belongs to its device: an edited plan that
    writes another device's service variable is refused before any write."""
    path = job(tmp_path, SET.format(v="debug"), allow='allow_fleets = ["acme/gateway"]')
    plan = tmp_path / "p.json"
    assert main(["plan", str(path), "-o", str(plan)]) == ExitCode.OK
    data = orjson.loads(plan.read_bytes())
    other = rows(env, "SELECT si.id, si.device FROM service_install si JOIN device d ON d.id = si.device "
                      "WHERE d.belongs_to__application = ? LIMIT 1", env.demo.fleets["acme/sensor"])[0]
    first = data["items"][0]

    def aim_elsewhere(doc: dict[str, Any]) -> None:
        doc["items"][0]["key"]["service_install"] = other[0]

    edit_plan_file(plan, aim_elsewhere, env.api_key)  # sealed again: the server-side check is tested
    capsys.readouterr()
    env.request_log.clear()
    code = main(["apply", str(plan), "--yes", "--force"])
    err = human(capsys.readouterr().err)
    assert code == ExitCode.REFUSED_BY_GUARD, err
    assert err == (f"bulkops: error: the plan writes rows of other targets (service_install {other[0]}"
                   f" belongs to device {other[1]}, not {first['target_id']}); the plan file was edited or is"
                   " corrupt: make a new plan\n")
    assert [e for e in env.request_log.entries() if e.method != "GET"] == []


def test_the_simulator_applies_balenas_rules(env: SimServer) -> None:
    """The simulator serves device service variables with the env var rules: a BALENA_ name is 400 with
    balena's message; a good one is created on the install."""
    install = rows(env, "SELECT id FROM service_install LIMIT 1")[0][0]

    def post(name: str) -> tuple[int, str]:
        req = urllib.request.Request(
            f"{env.url}/v7/device_service_environment_variable", method="POST",
            data=json.dumps({"service_install": install, "name": name, "value": "1"}).encode(),
            headers={"Authorization": f"Bearer {env.api_key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as answer:  # loopback simulator
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    assert post("BALENA_X") == (400, '"Environment variables beginning with RESIN_, BALENA_ are reserved."')
    status, body = post("GOOD_NAME")
    assert status == 201 and json.loads(body)["service_install"] == {"__id": install}
