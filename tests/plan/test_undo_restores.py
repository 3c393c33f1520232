"""Undo restores everything the run changed — a move's release pins included — and neither undo nor
``plan --retry-failed`` sends anything for a target deleted since: such items are skipped, with why."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops import open_client
from bulkops.apply.engine import RunControl
from bulkops.model import ApplyOptions, ChangeKind, Outcome, Plan, Progress, RunState
from bulkops.plan.retry import retry_plan
from bulkops.plan.undo import make_undo_plan
from bulkops.sim.server import SimServer
from tests.apply.test_apply_e2e import apply_only, job_text, plan_only
from tests.conftest import rows, writes

pytestmark = pytest.mark.anyio
PINS = "SELECT id, belongs_to__application, is_pinned_on__release FROM device WHERE id IN ({}) ORDER BY id"


def _ids(plan: Plan) -> str:
    return ",".join(str(it.target_id) for it in plan.items)


async def _delete_devices(sim: SimServer, ids: list[int]) -> None:
    async with open_client(sim.url, sim.api_key, ApplyOptions()) as client:
        for device in ids:
            await client.delete("device", key=device)


async def test_undo_of_move_restores_release_pins(sim: SimServer, home: Path) -> None:
    """A move clears pins; its plan records each device's pin and the undo puts every device back in its
    fleet with its pin."""
    stable = "device_tag/any(t:t/tag_key eq 'ring' and t/value eq 'stable')"
    plan = await plan_only(sim, job_text('type = "move"\nto_fleet = "acme/gateway-next"', filt=stable))
    before = rows(sim, PINS.format(_ids(plan)))
    pinned = [r for r in before if r[2] is not None]
    assert len(pinned) > 50
    assert all(it.before is not None and "is_pinned_on__release" in it.before for it in plan.items)
    summary, journal = await apply_only(sim, plan)
    assert summary.counts["applied"] == len(plan.items)
    assert rows(sim, f"SELECT COUNT(is_pinned_on__release) FROM device WHERE id IN ({_ids(plan)})") == [(0,)]
    async with open_client(sim.url, sim.api_key, plan.options) as client:
        undo = await make_undo_plan(plan, journal, client)
    journal.close()
    n = len(plan.items)
    assert undo.warnings == (f"{n} devices will move back to their previous fleet, with their release pins "
                             "restored",)
    undone, undo_journal = await apply_only(sim, undo)
    undo_journal.close()
    assert undone.state is RunState.DONE and undone.counts["applied"] == len(plan.items)
    assert rows(sim, PINS.format(_ids(plan))) == before


async def test_undo_skips_targets_deleted_since(sim: SimServer, home: Path) -> None:
    """Undo of remove_tag re-creates the tags of devices that still exist; a device deleted since is
    skipped with the reason, and no POST is sent for it."""
    plan = await plan_only(sim, job_text('type = "remove_tag"\nkey = "site"', fleet="acme/gateway-next"))
    summary, journal = await apply_only(sim, plan)
    assert summary.counts["applied"] == len(plan.items) > 2
    gone = [plan.items[0], plan.items[1]]
    await _delete_devices(sim, [it.target_id for it in gone])
    async with open_client(sim.url, sim.api_key, plan.options) as client:
        undo = await make_undo_plan(plan, journal, client)
    journal.close()
    assert undo.counts()["create"] == len(plan.items) - 2
    assert "2 devices no longer exist: skipped" in undo.warnings
    posts_before = sum(1 for e in writes(sim) if e.method == "POST")
    undone, undo_journal = await apply_only(sim, undo)
    results = {j.target_id: j for j in undo_journal.items()}
    undo_journal.close()
    assert undone.counts["skipped"] == 2 and undone.counts["applied"] == len(plan.items) - 2
    for it in gone:
        assert (results[it.target_id].outcome, results[it.target_id].error) == (
            Outcome.SKIPPED, f"device {it.label} no longer exists")
        assert results[it.target_id].attempts == 0
    posts = [e for e in writes(sim) if e.method == "POST"][posts_before:]
    assert len(posts) == len(plan.items) - 2 and {e.status for e in posts} == {201}


async def test_retry_failed_skips_targets_deleted_since(sim: SimServer, home: Path) -> None:
    """`plan --retry-failed` of a stopped run skips, with the reason, the targets deleted since; applying
    it sends nothing for them."""
    plan = await plan_only(sim, job_text('type = "set_env"\nname = "RETRY"\nvalue = "on"',
                                         fleet="acme/gateway-next"))
    control = RunControl()

    def stop_early(p: Progress) -> None:
        if p.done >= 10:
            control.stop()

    summary, journal = await apply_only(sim, plan, control=control, on_progress=stop_early)
    assert summary.state is RunState.INTERRUPTED
    left = [plan.items[j.index] for j in journal.items() if j.outcome is None]
    gone = left[-2:]
    await _delete_devices(sim, [it.target_id for it in gone])
    async with open_client(sim.url, sim.api_key, plan.options) as client:
        retry = await retry_plan(plan, journal, client)
    journal.close()
    assert retry.counts()["create"] == len(left) - 2
    assert "2 devices no longer exist: skipped" in retry.warnings
    posts_before = sum(1 for e in writes(sim) if e.method == "POST")
    done, retry_journal = await apply_only(sim, retry)
    results = {j.target_id: j for j in retry_journal.items()}
    retry_journal.close()
    assert done.counts["skipped"] == 2 and done.counts["applied"] == len(left) - 2
    assert {(results[it.target_id].outcome, results[it.target_id].error) for it in gone} == {
        (Outcome.SKIPPED, f"device {it.label} no longer exists") for it in gone}
    posts = [e for e in writes(sim) if e.method == "POST"][posts_before:]
    assert len(posts) == len(left) - 2 and {e.status for e in posts} == {201}
    assert all(it.kind is ChangeKind.CREATE for it in left)
