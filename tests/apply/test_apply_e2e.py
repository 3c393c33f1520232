"""Each action type end to end through the library against the simulator over HTTP (2,000 devices)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bulkops import apply_plan, make_plan, new_run, open_client, parse_job
from bulkops.apply.engine import RunControl
from bulkops.journal.journal import Journal
from bulkops.model import ChangeKind, Outcome, Plan, Progress, RunState, RunSummary
from bulkops.sim.server import SimServer
from tests.conftest import addressed_ids, rows, writes

pytestmark = pytest.mark.anyio


def job_text(action: str, *, fleet: str = "acme/gateway", filt: str | None = None, extra: str = "") -> str:
    lines = ['name = "t"', "[target]", 'resource = "device"', f'fleet = "{fleet}"']
    if filt:
        lines.append(f'filter = "{filt}"')
    lines.append(extra)
    lines.append("[action]")
    lines.append(action)
    return "\n".join(lines) + "\n"


async def plan_only(sim: SimServer, text: str) -> Plan:
    job = parse_job(text)
    async with open_client(sim.url, sim.api_key, job.options) as client:
        return await make_plan(job, client, api_url=sim.url)


async def apply_only(sim: SimServer, plan: Plan, control: RunControl | None = None,
                     on_progress: Any = None) -> tuple[RunSummary, Journal]:
    async with open_client(sim.url, sim.api_key, plan.options) as client:
        journal = new_run(plan)
        summary = await apply_plan(plan, client, journal, control=control, on_progress=on_progress)
    return summary, journal


async def resume_only(sim: SimServer, plan: Plan, run_dir: Path) -> tuple[RunSummary, Journal]:
    """Open the run's journal again, as ``bulkops resume`` does, and finish the plan; the caller closes
    the journal it gets back."""
    resumed = Journal.open(run_dir)
    async with open_client(sim.url, sim.api_key, plan.options) as client:
        final = await apply_plan(plan, client, resumed)
    return final, resumed


def planned_row_ids(plan: Plan) -> set[int]:
    return {it.row_id for it in plan.items if it.kind is not ChangeKind.NOOP and it.row_id is not None}


def assert_writes_inside_plan(sim: SimServer, plan: Plan) -> None:
    """No write request addresses a row id outside the plan's non-no-op items."""
    allowed = planned_row_ids(plan)
    for entry in writes(sim):
        assert addressed_ids(entry.url) <= allowed, entry.url


async def test_set_env_creates_and_changes_and_skips_noops(sim: SimServer, home: Path) -> None:
    """set_env: changed rows PATCHed in batches, absent rows POSTed, equal rows never sent."""
    plan = await plan_only(sim, job_text('type = "set_env"\nname = "LOG_LEVEL"\nvalue = "debug"'))
    counts = plan.counts()
    fleet = sim.demo.fleets["acme/gateway"]
    n = rows(sim, "SELECT COUNT(*) FROM device WHERE belongs_to__application=?", fleet)[0][0]
    assert len(plan.items) == n and counts["create"] > 0 and counts["change"] > 0 and counts["noop"] > 0
    before_log = len(sim.request_log.entries())
    summary, journal = await apply_only(sim, plan)
    assert summary.state is RunState.DONE
    assert summary.counts["applied"] == counts["create"] + counts["change"]
    assert summary.counts["noop"] == counts["noop"] and summary.counts["failed"] == 0
    values = rows(sim, "SELECT d.id, v.value FROM device d LEFT JOIN device_environment_variable v "
                       "ON v.device=d.id AND v.name='LOG_LEVEL' WHERE d.belongs_to__application=?", fleet)
    assert {v for _, v in values} == {"debug"}
    assert_writes_inside_plan(sim, plan)
    entries = sim.request_log.entries()[before_log:]
    posts = [e for e in entries if e.method == "POST"]
    patches = [e for e in entries if e.method == "PATCH"]
    assert len(posts) == counts["create"]
    assert len(patches) <= 4 + counts["change"] // 200 * 3  # a few before-value groups, batches of 200
    noop_devices = {it.target_id for it in plan.items if it.kind is ChangeKind.NOOP}
    assert all(it.outcome is Outcome.NOOP and it.attempts == 0 for it in journal.items()
               if it.target_id in noop_devices)
    journal.close()


async def test_remove_env_deletes_only_existing_rows(sim: SimServer, home: Path) -> None:
    """remove_env: existing rows deleted (in batches), devices without the var are no-ops."""
    plan = await plan_only(sim, job_text('type = "remove_env"\nname = "LOG_LEVEL"', fleet="acme/sensor"))
    fleet = sim.demo.fleets["acme/sensor"]
    summary, journal = await apply_only(sim, plan)
    journal.close()
    assert summary.counts["applied"] == plan.counts()["delete"] > 0
    left = rows(sim, "SELECT COUNT(*) FROM device_environment_variable v JOIN device d ON v.device=d.id "
                     "WHERE d.belongs_to__application=? AND v.name='LOG_LEVEL'", fleet)
    assert left == [(0,)]
    assert_writes_inside_plan(sim, plan)


async def test_set_and_remove_tag(sim: SimServer, home: Path) -> None:
    """set_tag changes ring=canary→stable on canaries; remove_tag then removes the tag on them."""
    canaries = "device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'canary')"
    plan = await plan_only(sim, job_text('type = "set_tag"\nkey = "ring"\nvalue = "beta"', filt=canaries))
    assert plan.counts() == {"change": len(plan.items), "create": 0, "delete": 0, "noop": 0}
    summary, journal = await apply_only(sim, plan)
    journal.close()
    assert summary.counts["applied"] == len(plan.items)
    ids = [it.target_id for it in plan.items]
    listed = ",".join(map(str, ids))
    got = rows(sim, f"SELECT DISTINCT value FROM device_tag WHERE tag_key='ring' AND device IN ({listed})")
    assert got == [("beta",)]
    plan2 = await plan_only(sim, job_text('type = "remove_tag"\nkey = "ring"',
                                          filt="device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'beta')"))
    assert {it.target_id for it in plan2.items} == set(ids)
    summary2, journal2 = await apply_only(sim, plan2)
    journal2.close()
    assert summary2.counts["applied"] == len(ids)
    left = rows(sim, f"SELECT COUNT(*) FROM device_tag WHERE tag_key='ring' AND device IN ({listed})")
    assert left == [(0,)]


async def test_patch_note(sim: SimServer, home: Path) -> None:
    """patch: one PATCH per batch of ids sets the field; a second plan finds only no-ops."""
    text = job_text('type = "patch"\nfields = { note = "audited" }', fleet="acme/gateway-next")
    plan = await plan_only(sim, text)
    summary, journal = await apply_only(sim, plan)
    journal.close()
    fleet = sim.demo.fleets["acme/gateway-next"]
    assert summary.counts["applied"] == len(plan.items) > 0
    notes = rows(sim, "SELECT DISTINCT note FROM device WHERE belongs_to__application=?", fleet)
    assert notes == [("audited",)]
    again = await plan_only(sim, text)
    assert again.counts()["noop"] == len(again.items)


async def test_move_devices(sim: SimServer, home: Path) -> None:
    """move: the stable ring of acme/gateway lands in acme/gateway-next; nothing else moves."""
    stable = "device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'stable')"
    plan = await plan_only(sim, job_text('type = "move"\nto_fleet = "acme/gateway-next"', filt=stable))
    summary, journal = await apply_only(sim, plan)
    journal.close()
    src, dst = sim.demo.fleets["acme/gateway"], sim.demo.fleets["acme/gateway-next"]
    assert summary.counts["applied"] == len(plan.items) > 100
    ids = ",".join(str(it.target_id) for it in plan.items)
    assert rows(sim, f"SELECT DISTINCT belongs_to__application FROM device WHERE id IN ({ids})") == [(dst,)]
    left = rows(sim, "SELECT COUNT(*) FROM device d JOIN device_tag t ON t.device=d.id AND t.tag_key='ring' "
                     "WHERE d.belongs_to__application=? AND t.value='stable'", src)
    assert left == [(0,)]
    assert_writes_inside_plan(sim, plan)
    assert "acme/gateway-next" in plan.fleets and "will move to acme/gateway-next" in plan.warnings[0]


async def test_pin_by_semver(sim: SimServer, home: Path) -> None:
    """pin: devices are pinned to the fleet's release with that semver."""
    plan = await plan_only(sim, job_text('type = "pin"\nrelease = "1.4.0"', fleet="acme/sensor"))
    summary, journal = await apply_only(sim, plan)
    journal.close()
    release = sim.demo.releases["acme/sensor@1.4.0"]
    fleet = sim.demo.fleets["acme/sensor"]
    assert summary.counts["applied"] + summary.counts["noop"] == len(plan.items)
    assert rows(sim, "SELECT DISTINCT is_pinned_on__release FROM device WHERE belongs_to__application=?",
                fleet) == [(release,)]


async def test_delete_offline_devices(sim: SimServer, home: Path) -> None:
    """delete: devices offline for 90 days are deleted with their variables and tags."""
    text = job_text('type = "delete"', fleet="acme/sensor", extra='offline_for = "90d"')
    plan = await plan_only(sim, text)
    assert plan.irreversible and plan.warnings[0].startswith("delete is irreversible: ")
    ids = [it.target_id for it in plan.items]
    summary, journal = await apply_only(sim, plan)
    journal.close()
    assert summary.counts["applied"] == len(ids) > 0
    listed = ",".join(map(str, ids))
    assert rows(sim, f"SELECT COUNT(*) FROM device WHERE id IN ({listed})") == [(0,)]
    assert rows(sim, f"SELECT COUNT(*) FROM device_tag WHERE device IN ({listed})") == [(0,)]
    assert_writes_inside_plan(sim, plan)


async def test_drift_between_plan_and_apply_is_not_overwritten(sim: SimServer, home: Path) -> None:
    """A value changed on the server after planning is reported drifted and left as it is."""
    plan = await plan_only(sim, job_text('type = "set_env"\nname = "LOG_LEVEL"\nvalue = "debug"'))
    changes = [it for it in plan.items if it.kind is ChangeKind.CHANGE]
    victim = changes[0]
    sim.db.conn.execute("UPDATE device_environment_variable SET value='trace' WHERE id=?", (victim.row_id,))
    summary, journal = await apply_only(sim, plan)
    by_target = {it.target_id: it for it in journal.items()}
    journal.close()
    assert by_target[victim.target_id].outcome is Outcome.DRIFTED
    assert summary.counts["drifted"] == 1
    value = rows(sim, "SELECT value FROM device_environment_variable WHERE id=?", victim.row_id)
    assert value == [("trace",)]


async def test_progress_and_stop_then_resume(sim: SimServer, home: Path) -> None:
    """A stop after some items leaves an interrupted run; resuming finishes it and counts each target once."""
    plan = await plan_only(sim, job_text('type = "set_env"\nname = "LOG_LEVEL"\nvalue = "warn"'))
    control = RunControl(grace=5.0)
    seen: list[Progress] = []

    def progress(p: Progress) -> None:
        seen.append(p)
        if p.done >= len(plan.items) // 2:
            control.stop()

    summary, journal = await apply_only(sim, plan, control=control, on_progress=progress)
    assert summary.state is RunState.INTERRUPTED
    assert summary.counts["not_attempted"] > 0
    journal.close()
    final, resumed = await resume_only(sim, plan, journal.run_dir)
    assert final.state is RunState.DONE
    assert sum(final.counts.values()) == len(plan.items)
    assert final.counts["not_attempted"] == 0 and final.counts["failed"] == 0
    fleet = sim.demo.fleets["acme/gateway"]
    values = rows(sim, "SELECT DISTINCT v.value FROM device d JOIN device_environment_variable v "
                       "ON v.device=d.id AND v.name='LOG_LEVEL' WHERE d.belongs_to__application=?", fleet)
    assert values == [("warn",)]
    dupes = rows(sim, "SELECT device, COUNT(*) FROM device_environment_variable WHERE name='LOG_LEVEL' "
                      "GROUP BY device HAVING COUNT(*) > 1")
    assert dupes == []
    resumed.close()


async def test_set_config_on_devices(sim: SimServer, home: Path) -> None:
    """set_config writes device config vars (BALENA_ names) with the same create/change/no-op diff."""
    text = job_text('type = "set_config"\nname = "BALENA_SUPERVISOR_POLL_INTERVAL"\nvalue = "600000"',
                    fleet="acme/gateway-next")
    plan = await plan_only(sim, text)
    assert {it.resource for it in plan.items} == {"device_config_variable"}
    summary, journal = await apply_only(sim, plan)
    journal.close()
    fleet = sim.demo.fleets["acme/gateway-next"]
    assert summary.counts["applied"] + summary.counts["noop"] == len(plan.items) > 0
    got = rows(sim, "SELECT COUNT(*) FROM device d JOIN device_config_variable c ON c.device=d.id AND "
                    "c.name='BALENA_SUPERVISOR_POLL_INTERVAL' AND c.value='600000' "
                    "WHERE d.belongs_to__application=?", fleet)
    assert got == [(len(plan.items),)]


async def test_fleet_env_var_on_fleets(sim: SimServer, home: Path) -> None:
    """A fleet target writes application env vars: one change per fleet, addressed by row id."""
    text = ('name = "t"\n[target]\nresource = "application"\nfleets = ["acme/gateway", "acme/sensor"]\n'
            '[action]\ntype = "set_env"\nname = "LOG_LEVEL"\nvalue = "warn"\n')
    plan = await plan_only(sim, text)
    assert [(it.label, it.kind, it.before) for it in plan.items] == [
        ("acme/gateway", ChangeKind.CHANGE, {"value": "info"}),
        ("acme/sensor", ChangeKind.CHANGE, {"value": "info"}),
    ]
    summary, journal = await apply_only(sim, plan)
    journal.close()
    assert summary.counts["applied"] == 2
    got = rows(sim, "SELECT application, value FROM application_environment_variable WHERE name='LOG_LEVEL' "
                    "ORDER BY application")
    fleets = sim.demo.fleets
    assert got == [(fleets["acme/gateway"], "warn"), (fleets["acme/sensor"], "warn"),
                   (fleets["acme/gateway-next"], "info"), (fleets["globex/kiosk"], "info")]
