"""Undo: a run's applied items inverted into a new plan that restores the exact before-state."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops import open_client
from bulkops.apply.engine import RunControl
from bulkops.journal.journal import Journal
from bulkops.model import ChangeKind, Plan, Progress, RunState
from bulkops.plan.undo import make_undo_plan
from bulkops.sim.server import SimServer
from tests.apply.test_apply_e2e import apply_only, job_text, plan_only
from tests.conftest import rows

pytestmark = pytest.mark.anyio

LOG_LEVELS = ("SELECT d.id, v.value FROM device d LEFT JOIN device_environment_variable v ON v.device=d.id "
              "AND v.name='LOG_LEVEL' WHERE d.belongs_to__application=? ORDER BY d.id")


async def undo_plan(sim: SimServer, plan: Plan, journal: Journal) -> Plan:
    async with open_client(sim.url, sim.api_key, plan.options) as client:
        return await make_undo_plan(plan, journal, client)


async def test_undo_after_partial_run_restores_before_state(sim: SimServer, home: Path) -> None:
    """Undo of a half-done set_env removes what it created and restores what it changed, nothing else."""
    fleet = sim.demo.fleets["acme/gateway"]
    original = rows(sim, LOG_LEVELS, fleet)
    plan = await plan_only(sim, job_text('type = "set_env"\nname = "LOG_LEVEL"\nvalue = "debug"'))
    control = RunControl()

    def stop_halfway(p: Progress) -> None:
        if p.done >= len(plan.items) // 2:
            control.stop()

    summary, journal = await apply_only(sim, plan, control=control, on_progress=stop_halfway)
    assert summary.state is RunState.INTERRUPTED and 0 < summary.counts["applied"] < len(plan.items)
    undo = await undo_plan(sim, plan, journal)
    journal.close()
    assert undo.undo_of == journal.run_id and len(undo.items) == summary.counts["applied"]
    kinds = undo.counts()
    assert kinds["delete"] > 0 and kinds["change"] > 0 and kinds["create"] == 0
    undone, undo_journal = await apply_only(sim, undo)
    undo_journal.close()
    assert undone.state is RunState.DONE and undone.counts["applied"] == len(undo.items)
    assert rows(sim, LOG_LEVELS, fleet) == original


async def test_undo_remove_tag_recreates_old_values(sim: SimServer, home: Path) -> None:
    """Undo of remove_tag puts every removed tag back with its old value."""
    before = rows(sim, "SELECT device, value FROM device_tag WHERE tag_key='site' ORDER BY device")
    plan = await plan_only(sim, job_text('type = "remove_tag"\nkey = "site"', fleet="acme/gateway-next"))
    summary, journal = await apply_only(sim, plan)
    assert summary.counts["applied"] == len(plan.items) > 0
    undo = await undo_plan(sim, plan, journal)
    journal.close()
    assert undo.counts()["create"] == len(plan.items)
    undone, undo_journal = await apply_only(sim, undo)
    undo_journal.close()
    assert undone.counts["applied"] == len(plan.items)
    assert rows(sim, "SELECT device, value FROM device_tag WHERE tag_key='site' ORDER BY device") == before


async def test_undo_move_and_drift(sim: SimServer, home: Path) -> None:
    """Undo of a move moves devices back; a device moved elsewhere since is left alone as drifted."""
    stable = "device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'stable')"
    plan = await plan_only(sim, job_text('type = "move"\nto_fleet = "acme/gateway-next"', filt=stable))
    _, journal = await apply_only(sim, plan)
    moved_elsewhere = plan.items[0].target_id
    sim.db.conn.execute("UPDATE device SET belongs_to__application=? WHERE id=?",
                        (sim.demo.fleets["acme/sensor"], moved_elsewhere))
    undo = await undo_plan(sim, plan, journal)
    journal.close()
    assert [it.target_id for it in undo.items] == [it.target_id for it in plan.items[1:]]
    assert undo.warnings[0] == "1 device changed since the run: left as they are (drifted)"
    assert "move back to their previous fleet" in undo.warnings[1]
    undone, undo_journal = await apply_only(sim, undo)
    undo_journal.close()
    assert undone.counts["applied"] == len(plan.items) - 1
    ids = ",".join(str(it.target_id) for it in plan.items[1:])
    assert rows(sim, f"SELECT DISTINCT belongs_to__application FROM device WHERE id IN ({ids})") == [
        (sim.demo.fleets["acme/gateway"],)]


async def test_undo_of_delete_is_skipped(sim: SimServer, home: Path) -> None:
    """Deleted devices cannot be restored: the undo plan is empty and says so."""
    plan = await plan_only(sim, job_text('type = "delete"', fleet="acme/sensor", extra='offline_for = "90d"'))
    summary, journal = await apply_only(sim, plan)
    undo = await undo_plan(sim, plan, journal)
    journal.close()
    n = summary.counts["applied"]
    assert undo.items == ()
    assert undo.warnings == (f"{n} devices deleted by the run cannot be restored: skipped",)
    assert all(it.kind is ChangeKind.DELETE for it in plan.items)
