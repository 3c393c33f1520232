"""A preview a person can check against a real fleet: named devices, values in their terms, a tally of
current values, counts per fleet, warnings with their numbers, the description, the API URL, every
target as CSV, and a confirmation that repeats what it confirms. Expected numbers are read from the
simulator's database, never typed in."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import orjson
import pytest

from bulkops.cli.commands import confirm
from bulkops.cli.main import main
from bulkops.errors import ExitCode
from bulkops.plan.file import read_plan
from bulkops.sim.server import SimServer
from tests.conftest import human, rows

CANARIES = "device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'canary')"


def job_file(tmp_path: Path, body: str, name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def fleet_devices(sim: SimServer, slug: str) -> list[tuple[int, str, str, int, int | None, int | None]]:
    return rows(sim, "SELECT id, uuid, device_name, is_online, is_pinned_on__release, is_running__release "
                     "FROM device WHERE belongs_to__application = ? ORDER BY id", sim.demo.fleets[slug])


def canary_ids(sim: SimServer, slug: str = "acme/gateway") -> set[int]:
    found = rows(sim, "SELECT d.id FROM device d JOIN device_tag t ON t.device = d.id AND t.tag_key = 'ring' "
                      "AND t.value = 'canary' WHERE d.belongs_to__application = ?", sim.demo.fleets[slug])
    return {r[0] for r in found}


def versions(sim: SimServer) -> dict[int, str]:
    found = rows(sim, "SELECT id, semver_major, semver_minor, semver_patch FROM release")
    return {r[0]: f"{r[1]}.{r[2]}.{r[3]}" for r in found}


def test_set_env_preview_names_devices_tallies_and_counts(env: SimServer, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The preview shows the description and API URL, counts per fleet, a tally of current values, and
    sample rows naming each device (name, short uuid, fleet, online or last seen)."""
    job = job_file(tmp_path, 'name = "levels"\ndescription = "Reset the log level of every sensor"\n'
                             '[target]\nresource = "device"\nfleet = "acme/sensor"\n'
                             '[action]\ntype = "set_env"\nname = "LOG_LEVEL"\nvalue = "info"\n')
    assert main(["plan", str(job), "-o", str(tmp_path / "p.json")]) == ExitCode.OK
    text = capsys.readouterr().out
    devices = fleet_devices(env, "acme/sensor")
    current = dict(rows(env, "SELECT device, value FROM device_environment_variable "
                             "WHERE name = 'LOG_LEVEL'"))
    values = Counter(current.get(d[0], "(absent)") for d in devices)
    active = sum(n for v, n in values.items() if v != "info")
    lines = text.splitlines()
    assert lines[1] == "about    Reset the log level of every sensor"
    assert lines[2] == f"api      {env.url}"
    assert f"fleets   acme/sensor {len(devices):,} ({active:,} to apply)" in lines
    tally = " · ".join(f"{v} {n:,}" for v, n in values.most_common())
    assert f"now      {tally}  → info" in lines
    by_uuid = {d[1][:7]: d for d in devices}
    sample = lines[lines.index("sample") + 1: lines.index("sample") + 11]
    for line in sample:
        kind, name, short, fleet, *rest = line.split()
        device = by_uuid[short]
        assert (name, fleet) == (device[2], "acme/sensor")
        state = " ".join(rest[:-3])
        assert state == "online" if device[3] else state.startswith("offline, seen ")
        assert " ".join(rest[-3:]) == f"{current.get(device[0], '(absent)')} → info"
        assert kind == ("create" if device[0] not in current else "change")
    assert f"warning  {active} devices will restart services" in lines


def test_fleet_level_restart_warning_counts_devices(env: SimServer, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A fleet-level variable warns with the number of devices that restart, not "every device"."""
    job = job_file(tmp_path, '[target]\nresource = "fleet"\nfleet = "acme/gateway"\n'
                             '[action]\ntype = "set_env"\nname = "FLEETWIDE"\nvalue = "1"\n'.replace(
                                 "[target]", 'name = "fleetvar"\n[target]'))
    assert main(["plan", str(job), "-o", str(tmp_path / "p.json")]) == ExitCode.OK
    out = capsys.readouterr().out
    n = len(fleet_devices(env, "acme/gateway"))
    assert f"warning  {n:,} devices of 1 fleet (acme/gateway) will restart services" in out.splitlines()
    assert f"  create  acme/gateway  {n:,} devices  (absent) → 1" in out


def test_pin_preview_shows_versions_and_downgrades(env: SimServer, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A pin shows release versions (not ids), tallies the current pins, and counts the devices it takes
    back to an older release."""
    job = job_file(tmp_path, f'name = "pin"\n[target]\nresource = "device"\nfleet = "acme/gateway"\n'
                             f'filter = "{CANARIES}"\n[action]\ntype = "pin"\nrelease = "1.5.0"\n')
    assert main(["plan", str(job), "-o", str(tmp_path / "p.json")]) == ExitCode.OK
    out = capsys.readouterr().out
    names = versions(env)
    tagged = canary_ids(env)
    canaries = [d for d in fleet_devices(env, "acme/gateway") if d[0] in tagged]
    pins = Counter(names[d[4]] if d[4] else "follows fleet" for d in canaries)
    down = Counter(f"{names[d[5]]} → 1.5.0" for d in canaries
                   if tuple(map(int, names[d[5]].split("."))) > (1, 5, 0))
    assert down, "the demo data has canaries on 2.0.0"
    tally = " · ".join(f"{v} {n:,}" for v, n in pins.most_common())
    assert f"now      {tally}  → 1.5.0" in out.splitlines()
    shown = ", ".join(f"{k} ×{n}" for k, n in down.most_common())
    assert (f"warning  downgrade: {sum(down.values())} devices will go back to an older release ({shown})"
            in out.splitlines())
    assert "is_pinned_on__release" not in out


def test_fleet_pin_downgrade_names_the_fleet_size(env: SimServer, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Pinning a fleet's target from 1.5.0 back to 1.4.0 is flagged with the devices that follow it."""
    job = job_file(tmp_path, 'name = "fleetpin"\n[target]\nresource = "fleet"\nfleet = "acme/gateway"\n'
                             '[action]\ntype = "pin"\nrelease = "1.4.0"\n')
    assert main(["plan", str(job), "-o", str(tmp_path / "p.json")]) == ExitCode.OK
    out = capsys.readouterr().out
    n = len(fleet_devices(env, "acme/gateway"))
    assert (f"warning  downgrade: 1 fleet will go back to an older release (1.5.0 → 1.4.0 ×1), moving up to"
            f" {n:,} devices that follow them") in out.splitlines()
    assert "  change  acme/gateway  " in out and "1.5.0 → 1.4.0" in out


def test_undo_to_a_release_that_failed_is_flagged(env: SimServer, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """An undo that would pin devices back to a release whose status is no longer 'success' says so, with
    the number of devices."""
    job = job_file(tmp_path, f'name = "pin"\n[target]\nresource = "device"\nfleet = "acme/gateway"\n'
                             f'filter = "{CANARIES}"\n[action]\ntype = "pin"\nrelease = "1.5.0"\n')
    tagged, old = canary_ids(env), env.demo.releases["acme/gateway@1.4.0"]
    on_140 = [d for d in fleet_devices(env, "acme/gateway") if d[0] in tagged and d[4] == old]
    assert on_140, "the demo data has canaries pinned to 1.4.0"
    assert main(["run", str(job), "--yes"]) == ExitCode.OK
    run_id = human(capsys.readouterr().err).split("bulkops: run ")[1].split()[0]
    env.db.conn.execute("UPDATE release SET status = 'failed' WHERE id = ?",
                        (env.demo.releases["acme/gateway@1.4.0"],))
    assert main(["undo", run_id, "-o", str(tmp_path / "undo.json")]) == ExitCode.OK
    out = capsys.readouterr().out
    assert (f"warning  {len(on_140)} {'device' if len(on_140) == 1 else 'devices'} would run release 1.4.0,"
            " whose status is 'failed': balena refuses a pin to a release that is not 'success'"
            in out.splitlines())


def test_move_preview_counts_pins_and_service_variables(env: SimServer, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A move names source and destination fleets by slug and counts the pins it clears and the devices
    whose service variables it deletes."""
    tagged = canary_ids(env)
    stable = [d for d in fleet_devices(env, "acme/gateway") if d[0] not in tagged]
    stable = sorted(stable, key=lambda d: (d[4] is None, d[0]))[:40]  # the pinned ones first
    uuids = ", ".join(f'"{d[1]}"' for d in stable)
    victim = stable[0][1]
    assert main(["env", "set", "X", "1", "--service", "main", "--uuid", victim, "--yes"]) == ExitCode.OK
    capsys.readouterr()
    job = job_file(tmp_path, f'name = "mv"\n[target]\nresource = "device"\nuuids = [{uuids}]\n'
                             '[action]\ntype = "move"\nto_fleet = "acme/gateway-next"\n')
    assert main(["plan", str(job), "-o", str(tmp_path / "p.json")]) == ExitCode.OK
    lines = capsys.readouterr().out.splitlines()
    names = versions(env)
    pinned = Counter(names[d[4]] for d in stable if d[4])
    assert "fleets   acme/gateway 40" in lines and "to       acme/gateway-next" in lines
    assert f"listed   {len(stable)} uuids" in lines
    assert "filter   (none besides the listed targets)" in lines
    shown = ", ".join(f"{k} ×{n}" for k, n in pinned.most_common())
    n = sum(pinned.values())
    assert f"warning  {n} devices of them are pinned ({shown}): the move clears their pins" in lines
    assert ("warning  1 device of them has device service variables, which the move deletes with the old"
            " fleet's service installs (device env vars and tags stay)") in lines
    assert any(line.endswith("acme/gateway → acme/gateway-next") for line in lines)


def test_plan_json_carries_the_context(env: SimServer, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """plan --json gives the same facts: description, API URL, per fleet, current values, named samples."""
    job = job_file(tmp_path, f'name = "j"\ndescription = "why"\n[target]\nresource = "device"\n'
                             f'fleet = "acme/gateway"\nfilter = "{CANARIES}"\n'
                             '[action]\ntype = "set_tag"\nkey = "channel"\nvalue = "beta"\n')
    assert main(["plan", str(job), "-o", str(tmp_path / "p.json"), "--json"]) == ExitCode.OK
    doc = json.loads(capsys.readouterr().out)
    n = len(canary_ids(env))
    assert (doc["description"], doc["api_url"], doc["wanted"]) == ("why", env.url, "beta")
    assert doc["per_fleet"] == {"acme/gateway": {"targets": n, "to_apply": n}}
    assert doc["current_values"] == [{"value": "(absent)", "count": n}]
    names = dict(rows(env, "SELECT uuid, device_name FROM device"))
    assert all(s["name"] == names[s["label"]] and s["fleet"] == "acme/gateway" for s in doc["samples"])


def test_csv_lists_every_target(env: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """plan --csv FILE writes one row per target (id, uuid, name, fleet, change, before, after …); --csv -
    writes the same to stdout, and the preview moves to stderr."""
    job = job_file(tmp_path, 'name = "levels"\n[target]\nresource = "device"\nfleets = ["acme/sensor", '
                             '"acme/gateway-next"]\n[action]\ntype = "set_env"\nname = "LOG_LEVEL"\n'
                             'value = "info"\n')
    out_csv = tmp_path / "targets.csv"
    assert main(["plan", str(job), "-o", str(tmp_path / "p.json"), "--csv", str(out_csv)]) == ExitCode.OK
    preview = capsys.readouterr().out
    table = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    plan = read_plan(tmp_path / "p.json")
    assert list(table[0]) == ["id", "uuid", "name", "fleet", "change", "before", "after", "online",
                              "last_seen"]
    assert [int(r["id"]) for r in table] == [it.target_id for it in plan.items]
    by_id = {d[0]: d for slug in ("acme/sensor", "acme/gateway-next") for d in fleet_devices(env, slug)}
    fleets: Counter[str] = Counter()
    active: Counter[str] = Counter()
    for r in table:
        d = by_id[int(r["id"])]
        assert (r["uuid"], r["name"], r["online"]) == (d[1], d[2], "true" if d[3] else "false")
        fleets[r["fleet"]] += 1
        active[r["fleet"]] += r["change"] != "noop"
    assert fleets == Counter({"acme/sensor": len(fleet_devices(env, "acme/sensor")),
                              "acme/gateway-next": len(fleet_devices(env, "acme/gateway-next"))})
    per_fleet = " · ".join(f"{k} {n:,} ({active[k]:,} to apply)" for k, n in fleets.most_common())
    assert f"fleets   {per_fleet}" in preview.splitlines()
    assert main(["plan", str(job), "-o", str(tmp_path / "p2.json"), "--csv", "-"]) == ExitCode.OK
    captured = capsys.readouterr()
    assert next(iter(csv.DictReader(io.StringIO(captured.out)))).keys() == table[0].keys()
    assert len(captured.out.splitlines()) == len(table) + 1
    events = [orjson.loads(line) for line in captured.err.splitlines()]
    assert [e["event"] for e in events] == ["bulkops.plan.preview", "bulkops.plan.csv_written",
                                            "bulkops.plan.written"]
    assert events[0]["preview"]["targets"] == len(table)


def test_stdout_is_claimed_once(env: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json and --csv - cannot both write to stdout: refused before anything is sent."""
    job = job_file(tmp_path, 'name = "j"\n[target]\nresource = "device"\nfleet = "acme/sensor"\n'
                             '[action]\ntype = "remove_tag"\nkey = "ring"\n')
    before = len(env.request_log.entries())
    assert main(["plan", str(job), "--json", "--csv", "-"]) == ExitCode.INVALID_INPUT
    assert human(capsys.readouterr().err) == (
        "bulkops: error: only one of --json, --csv - can write to stdout: give a file name to the others\n")
    assert len(env.request_log.entries()) == before


def test_confirmation_repeats_job_action_fleets_and_counts(env: SimServer, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The prompt names the job, the action, the fleets and the counts per kind before asking."""
    job = job_file(tmp_path, f'name = "debug-canaries"\n[target]\nresource = "device"\n'
                             f'fleet = "acme/gateway"\nfilter = "{CANARIES}"\n[action]\ntype = "set_env"\n'
                             'name = "LOG_LEVEL"\nvalue = "debug"\n')
    assert main(["plan", str(job), "-o", str(tmp_path / "p.json")]) == ExitCode.OK
    capsys.readouterr()
    plan = read_plan(tmp_path / "p.json")
    c = plan.counts()
    active = c["change"] + c["create"]
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    confirm(plan, yes=False, stdin_tty=True)
    kinds = " · ".join(f"{k} {c[k]}" for k in ("change", "create") if c[k])
    assert capsys.readouterr().err == (
        f"job debug-canaries: set_env LOG_LEVEL=debug on {active} of {len(plan.items)} devices in"
        f" acme/gateway ({kinds})\nApply these {active} changes? [y/N] ")
