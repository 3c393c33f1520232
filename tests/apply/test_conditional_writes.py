"""Every write is a compare-and-set: its ``$filter`` pins the plan's ids and carries, in the same request,
the before-values the plan saw and the job's target selection (cut-off fixed at plan time). A target
changed since the plan — even an instant before the write — is left alone and reported drifted with
what it is now."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bulkops import apply_plan, make_plan, new_run, open_client, parse_job
from bulkops.errors import ExitCode
from bulkops.model import ChangeKind, Outcome, Plan, RunState, RunSummary
from bulkops.odata.render import render
from bulkops.plan.file import read_plan
from bulkops.plan.undo import make_undo_plan
from bulkops.sim.server import SimServer
from tests.apply.conditional_helpers import Interloper, http_patch, interloped, stage_offline, write_filter
from tests.apply.test_kill_resume import bulkops, child_env, read_report, the_run
from tests.conftest import rows, writes

__all__ = ["interloped"]
pytestmark = pytest.mark.anyio
FLEET = "acme/gateway-next"  # 18 of the 600 demo devices
HAS_ROLE = "device_environment_variable/any(v:v/name eq 'ROLE')"
ROLES = "SELECT device, value FROM device_environment_variable WHERE name='ROLE' ORDER BY device"
CLEANUP = """\
name = "cleanup"
[target]
resource = "device"
fleet = "acme/sensor"
offline_for = "90d"
expect = { max = 2000 }
[action]
type = "delete"
"""


def test_cleanup_leaves_a_device_that_came_back_online(sim: SimServer, home: Path, tmp_path: Path) -> None:
    """A cleanup of devices offline for 90 days leaves one that came back online after the plan, and
    reports it drifted with what it is now; the DELETE carried the fixed cut-off."""
    fleet = sim.demo.fleets["acme/sensor"]
    online = [r[0] for r in rows(sim, "SELECT id FROM device WHERE belongs_to__application=? AND is_online=1 "
                                      "ORDER BY id LIMIT 3", fleet)]
    for device in online:  # staged over HTTP, as balena allows it
        stage_offline(sim, device, "2025-06-01T00:00:00.000Z")
    job = tmp_path / "cleanup.toml"
    job.write_text(CLEANUP)
    plan_file = tmp_path / "cleanup.plan.json"
    env = child_env(sim.url, sim.api_key, home)
    made = bulkops(["plan", str(job), "-o", str(plan_file)], env)
    assert made.returncode == 0, made.stderr
    plan = read_plan(plan_file)
    assert set(online) <= {it.target_id for it in plan.items}
    victim = online[0]
    http_patch(sim, "device", victim, {"is_online": True})  # it came back
    (seen,) = rows(sim, "SELECT last_connectivity_event FROM device WHERE id=?", victim)[0]
    logged = len(sim.request_log.entries())
    done = bulkops(["apply", str(plan_file), "--yes"], env)
    assert done.returncode == ExitCode.SOME_FAILED, done.stderr
    assert rows(sim, "SELECT COUNT(*) FROM device WHERE id=?", victim) == [(1,)]
    others = ",".join(str(it.target_id) for it in plan.items if it.target_id != victim)
    assert rows(sim, f"SELECT COUNT(*) FROM device WHERE id IN ({others})") == [(0,)]
    run_dir = the_run(home)
    assert run_dir is not None
    report = {r["id"]: r for r in read_report(run_dir, tmp_path / "r.json")["items"]}
    assert report[victim]["outcome"] == "drifted"
    assert report[victim]["error"] == (
        f"no longer matches the job's target: is_online is now true, last_connectivity_event is now '{seen}'")
    cutoff = orjson.loads(plan_file.read_bytes())["precondition"]
    assert cutoff.startswith(f"belongs_to__application in ({fleet}) and is_online eq false and "
                             "last_connectivity_event lt datetime'")
    sent = sim.request_log.entries()[logged:]
    deletes = [e for e in sent if e.method == "DELETE"]
    assert len(deletes) == 1 and f"and ({cutoff})" in deletes[0].url, deletes[0].url
    # the token check; one read-back; for the target left alone: does it match, its values, each term
    assert [e.method for e in sent] == ["GET", "DELETE"] + ["GET"] * 6


async def _plan(url: str, key: str, text: str) -> Plan:
    job = parse_job(text)
    async with open_client(url, key, job.options) as client:
        return await make_plan(job, client, api_url=url)


async def _apply(url: str, key: str, plan: Plan) -> tuple[RunSummary, dict[int, tuple[Outcome | None, str]]]:
    async with open_client(url, key, plan.options) as client:
        journal = new_run(plan)
        summary = await apply_plan(plan, client, journal)
    got = {j.target_id: (j.outcome, j.error or "") for j in journal.items()}
    journal.close()
    return summary, got


def _job(action: str, *, filt: str | None = None) -> str:
    where = f'filter = "{filt}"\n' if filt else ""
    return f'name = "t"\n[target]\nresource = "device"\nfleet = "{FLEET}"\n{where}[action]\n{action}\n'


async def test_child_write_of_a_device_moved_out_of_the_fleet_is_drifted(sim: SimServer, home: Path) -> None:
    """An env var change planned for a fleet's devices is not written for a device moved to another fleet
    since: the PATCH carries the selection on the owner (``device/any(…)``)."""
    plan = await _plan(sim.url, sim.api_key, _job('type = "set_env"\nname = "LOG_LEVEL"\nvalue = "debug"'))
    victim = next(it for it in plan.items if it.kind is ChangeKind.CHANGE)
    other = sim.demo.fleets["acme/sensor"]
    sim.db.conn.execute("UPDATE device SET belongs_to__application=? WHERE id=?", (other, victim.target_id))
    summary, got = await _apply(sim.url, sim.api_key, plan)
    assert got[victim.target_id] == (
        Outcome.DRIFTED, f"no longer matches the job's target: belongs_to__application is now {other}")
    assert rows(sim, "SELECT value FROM device_environment_variable WHERE id=?", victim.row_id) == [
        (victim.before["value"],)]  # type: ignore[index]
    assert summary.counts["drifted"] == 1
    fleet = sim.demo.fleets[FLEET]
    patches = [e for e in writes(sim) if e.method == "PATCH"]
    assert patches and all(f"device/any(o:o/belongs_to__application in ({fleet}))" in e.url for e in patches)


def _one_off(sim: SimServer, name: str) -> list[tuple[int, int, str]]:
    """Give five devices of FLEET the variable ``name`` with a value of their own: (device, row, value)."""
    devices = [r[0] for r in rows(sim, "SELECT id FROM device WHERE belongs_to__application=? ORDER BY id "
                                       "LIMIT 5", sim.demo.fleets[FLEET])]
    sim.db.insert_many("device_environment_variable",
                       [{"device": d, "name": name, "value": f"own-{d}"} for d in devices])
    return [(d, r, v) for d, r, v in rows(
        sim, "SELECT device, id, value FROM device_environment_variable WHERE name=? ORDER BY device", name)]


CASES = {
    "set_env": ('type = "set_env"\nname = "ROLE"\nvalue = "edge"', "PATCH", "device_environment_variable"),
    "remove_env": ('type = "remove_env"\nname = "ROLE"', "DELETE", "device_environment_variable"),
    "patch": ('type = "patch"\nfields = { note = "done" }', "PATCH", "device"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_change_landing_just_before_a_write_is_not_overwritten(
    interloped: tuple[SimServer, Interloper, str], home: Path, case: str
) -> None:
    """Targets whose before-values are all different (no shared value worth its own batch) are written
    with each one's before-value in the write's filter: a change that lands just before the write is
    left alone and reported drifted with its new value."""
    sim, proxy, url = interloped
    action, method, resource = CASES[case]
    own = _one_off(sim, "ROLE")
    if case == "patch":
        sim.db.conn.execute("UPDATE device SET note='n-' || id WHERE belongs_to__application=?",
                            (sim.demo.fleets[FLEET],))
    plan = await _plan(url, sim.api_key, _job(action, filt=HAS_ROLE))
    assert len([it for it in plan.items if it.kind is not ChangeKind.NOOP]) == 5
    device, row, _ = own[2]
    field = "note" if case == "patch" else "value"
    table, key = ("device", device) if case == "patch" else ("device_environment_variable", row)
    proxy.before_write[(method, resource)] = lambda: sim.db.conn.execute(
        f"UPDATE {table} SET {field}='theirs' WHERE id=?", (key,))
    logged = len(sim.request_log.entries())
    summary, got = await _apply(url, sim.api_key, plan)
    assert proxy.fired, "the write never went out"
    assert [e.method for e in sim.request_log.entries()[logged:]] == [method, "GET"]  # no read before it
    assert got[device] == (Outcome.DRIFTED, f"{field} is now 'theirs'")
    assert rows(sim, f"SELECT {field} FROM {table} WHERE id=?", key) == [("theirs",)]
    assert summary.counts["applied"] == 4 and summary.state is RunState.DONE
    for entry in writes(sim):
        filt = write_filter(entry.url)
        assert filt is not None and f"{field} eq " in render(filt), entry.url


async def test_undo_write_is_conditional(interloped: tuple[SimServer, Interloper, str], home: Path) -> None:
    """An undo (whose before-values are the run's after-values and whose after-values all differ) writes
    with the condition in the write: a change made just before it is not overwritten."""
    sim, proxy, url = interloped
    own = _one_off(sim, "ROLE")
    action = 'type = "set_env"\nname = "ROLE"\nvalue = "edge"'
    plan = await _plan(url, sim.api_key, _job(action, filt=HAS_ROLE))
    async with open_client(url, sim.api_key, plan.options) as client:
        journal = new_run(plan)
        await apply_plan(plan, client, journal)
        undo = await make_undo_plan(plan, journal, client)
    journal.close()
    assert undo.counts()["change"] == 5
    device, row, _ = own[0]
    proxy.before_write[("PATCH", "device_environment_variable")] = lambda: sim.db.conn.execute(
        "UPDATE device_environment_variable SET value='theirs' WHERE id=?", (row,))
    summary, got = await _apply(url, sim.api_key, undo)
    assert got[device] == (Outcome.DRIFTED, "value is now 'theirs'")
    assert summary.counts["applied"] == 4
    assert rows(sim, ROLES) == [(device, "theirs")] + [(d, v) for d, _, v in own[1:]]
