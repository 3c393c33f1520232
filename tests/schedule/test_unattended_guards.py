"""The unattended guards and the sharing between runs: grow_limit and approval, scope locks between jobs
whose targets overlap, one job never twice at once, one limiter per API and token, a stop mid-run."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from bulkops.apply.engine import RunControl
from bulkops.apply.runner import load_run, open_client, run_plan
from bulkops.job.load import parse_job
from bulkops.journal.journal import Journal
from bulkops.journal.runs import run_dir
from bulkops.model import RunState
from bulkops.schedule.clock import ManualClock
from bulkops.schedule.locks import scopes
from bulkops.schedule.run import Api, Limiters
from bulkops.schedule.store import SlotState
from bulkops.sim.server import SimServer
from tests.conftest import rows, writes
from tests.schedule.conftest import at, scheduler, tag_job, write

pytestmark = pytest.mark.anyio


def set_offline(sim: SimServer, fleet: str, count: int) -> None:
    """The first ``count`` devices of the fleet offline, the others online."""
    fid = sim.demo.fleets[fleet]
    ids = [r[0] for r in rows(sim, "SELECT id FROM device WHERE belongs_to__application=? ORDER BY id", fid)]
    sim.db.conn.execute("UPDATE device SET is_online=1 WHERE belongs_to__application=?", (fid,))
    marks = ",".join("?" for _ in ids[:count])
    sim.db.conn.execute(f"UPDATE device SET is_online=0 WHERE id IN ({marks})", ids[:count])


TAG_ACTION = 'type = "set_tag"\nkey = "nightly"\nvalue = "yes"'
ENV_ACTION = 'type = "set_env"\nname = "NIGHTLY"\nvalue = "1"'
OFFLINE_TAG = tag_job("mark-offline", schedule='"0 * * * *"', key="offline").replace(
    '[action]', 'filter = "is_online eq false"\n[action]')


async def test_a_plan_past_grow_limit_waits_for_approval(sim: SimServer, jobs: Path, home: Path) -> None:
    """After a run that changed 3 devices, a plan of 60 (> max(2×3, 3+50)) is not applied: the slot is
    journaled as needing approval with the numbers and the command; an approved run of the slot applies it."""
    write(jobs, "offline.toml", OFFLINE_TAG)
    set_offline(sim, "acme/sensor", 3)
    clock = ManualClock(at("2027-01-10T03:00:05Z"))
    s = scheduler(sim, jobs, clock)
    [first] = await s.run_due()
    assert first.state is SlotState.DONE and first.summary is not None
    assert first.summary.counts["applied"] == 3
    set_offline(sim, "acme/sensor", 63)  # 60 more: the 3 tagged already are no-ops
    clock.set(at("2027-01-10T04:00:05Z"))
    sent = len(writes(sim))
    [second] = await s.run_due()
    assert second.state is SlotState.NEEDS_APPROVAL
    assert second.detail == (
        "the plan changes 60 devices, the job's last run 3 (slot 2027-01-10T03:00:00Z); grow_limit allows 53 "
        "(the larger of 2 × 3 and 3 + 50): nothing was applied; after checking the plan (`bulkops plan "
        f"{jobs / 'offline.toml'}`), approve it with `bulkops run {jobs / 'offline.toml'} --yes --unattended "
        "--slot 2027-01-10T04:00:00Z --approve`")
    assert len(writes(sim)) == sent
    record = s.store.get("mark-offline", at("2027-01-10T04:00:00Z"))
    assert record is not None and (record.state, record.active) == (SlotState.NEEDS_APPROVAL, 60)
    # a plain claim of that slot stands back; an approving one takes it and applies it
    slot = at("2027-01-10T04:00:00Z")
    assert not s.store.claim("mark-offline", slot, "me", clock.now())
    assert s.store.claim("mark-offline", slot, "me", clock.now(), approve=True)
    job = s.jobs.scheduled()["mark-offline"]
    approved = await s.runner.run(job, slot, control=RunControl(), approve=True)
    assert approved.state is SlotState.DONE and approved.summary is not None
    assert approved.summary.counts["applied"] == 60
    assert rows(sim, "SELECT COUNT(*) FROM device_tag WHERE tag_key='offline'") == [(63,)]
    # the approved run is the new baseline: 60 → up to 120 pass
    baseline = s.store.baseline("mark-offline")
    assert baseline is not None and (baseline.slot, baseline.active) == ("2027-01-10T04:00:00Z", 60)


async def test_jobs_with_overlapping_targets_run_one_after_the_other(sim: SimServer, jobs: Path,
                                                                     home: Path) -> None:
    """Two jobs on the same fleet due in the same tick never interleave their requests; a job on another
    fleet does not wait for them."""
    write(jobs, "a.toml", tag_job("a-tag", schedule='"0 3 * * *"', fleet="acme/gateway"))
    write(jobs, "b.toml", tag_job("b-env", schedule='"0 3 * * *"', fleet="acme/gateway").replace(
        TAG_ACTION, ENV_ACTION))
    s = scheduler(sim, jobs, ManualClock(at("2027-01-10T03:00:05Z")))
    results = await s.run_due()
    assert sorted((r.job, r.state) for r in results) == [("a-tag", SlotState.DONE), ("b-env", SlotState.DONE)]
    log = sim.request_log.entries()
    tag_at = [i for i, e in enumerate(log) if "/device_tag" in e.url]
    env_at = [i for i, e in enumerate(log) if "/device_environment_variable" in e.url]
    assert len(tag_at) > 160 and len(env_at) > 160
    assert max(tag_at) < min(env_at) or max(env_at) < min(tag_at)


async def test_jobs_on_disjoint_fleets_run_side_by_side(sim: SimServer, jobs: Path, home: Path) -> None:
    """Two jobs on different fleets due in the same tick run at the same time: their requests interleave."""
    write(jobs, "a.toml", tag_job("a-tag", schedule='"0 3 * * *"', fleet="acme/gateway"))
    write(jobs, "b.toml", tag_job("b-env", schedule='"0 3 * * *"', fleet="acme/sensor").replace(
        TAG_ACTION, ENV_ACTION))
    sim.faults.set_spec("latency=10ms,methods=POST")
    s = scheduler(sim, jobs, ManualClock(at("2027-01-10T03:00:05Z")))
    assert [r.state for r in await s.run_due()] == [SlotState.DONE, SlotState.DONE]
    log = sim.request_log.entries()
    tag_at = [i for i, e in enumerate(log) if "/device_tag" in e.url]
    env_at = [i for i, e in enumerate(log) if "/device_environment_variable" in e.url]
    assert min(env_at) < max(tag_at) and min(tag_at) < max(env_at)


def test_scope_locks_cover_fleets_and_move_destinations() -> None:
    """A job with fleets holds the resource shared and each fleet (and a move's destination) exclusively;
    a job without fleets holds the whole resource exclusively."""
    move = parse_job('name = "m"\n[target]\nresource = "device"\nfleet = "acme/gateway"\n[action]\n'
                     'type = "move"\nto_fleet = "acme/gateway-next"\n')
    anywhere = parse_job('name = "f"\n[target]\nresource = "device"\nfilter = "is_online eq false"\n'
                         '[action]\ntype = "set_tag"\nkey = "k"\nvalue = "v"\n')
    assert scopes(move, "http://api/") == [("scope:http://api|device", False),
                                           ("scope:http://api|device|acme/gateway", True),
                                           ("scope:http://api|device|acme/gateway-next", True)]
    assert scopes(anywhere, "http://api") == [("scope:http://api|device", True)]


async def test_a_slot_due_while_the_same_job_runs_is_skipped(sim: SimServer, jobs: Path, home: Path) -> None:
    """A minute job whose run is still going when the next slot comes: that slot is journaled as an overlap
    naming the slot and run in progress; the first run finishes normally."""
    write(jobs, "tag.toml", tag_job("slow", schedule='"* * * * *"'))
    sim.faults.set_spec("latency=40ms,methods=POST")
    clock = ManualClock(at("2027-01-10T03:00:05Z"))
    s = scheduler(sim, jobs, clock)
    async with anyio.create_task_group() as tg:
        await s.tick(tg)
        with anyio.fail_after(10):
            while (running := s.store.running("slow")) is None or not running.run_id:
                await anyio.sleep(0.01)
        clock.set(at("2027-01-10T03:01:02Z"))
        await s.tick(tg)
    by_slot = {r.slot: r for r in s.results}
    first, second = by_slot[at("2027-01-10T03:00:00Z")], by_slot[at("2027-01-10T03:01:00Z")]
    assert first.state is SlotState.DONE
    assert (second.state, second.reason) == (SlotState.SKIPPED, "overlap")
    assert second.detail == f"the job is still running slot 2027-01-10T03:00:00Z (run {first.run_id})"


async def test_jobs_on_one_api_and_token_share_one_limiter(sim: SimServer, jobs: Path, home: Path) -> None:
    """Two jobs on the same API and token use one limiter, which sees every request of both; another token
    gets its own."""
    write(jobs, "a.toml", tag_job("a", schedule='"0 3 * * *"', fleet="acme/gateway"))
    write(jobs, "b.toml", tag_job("b", schedule='"0 3 * * *"', fleet="acme/sensor"))
    s = scheduler(sim, jobs, ManualClock(at("2027-01-10T03:00:05Z")))
    results = await s.run_due()
    assert [r.state for r in results] == [SlotState.DONE, SlotState.DONE]
    limiters = s.runner.limiters
    assert len(limiters) == 1
    stats = limiters.get(Api(sim.url, sim.api_key)).statistics()
    assert stats.admitted == sum(r.requests for r in results) == len(sim.request_log.entries())
    assert limiters.get(Api(sim.url, "another-token")) is not limiters.get(Api(sim.url, sim.api_key))
    assert len(Limiters()) == 0


async def test_a_stop_mid_run_leaves_it_resumable(sim: SimServer, jobs: Path, home: Path) -> None:
    """Stopping the scheduler during a run stops it like apply does: the slot and the run are interrupted,
    and resuming the run finishes what was left."""
    write(jobs, "tag.toml", tag_job("tag", schedule='"0 3 * * *"', fleet="acme/gateway"))
    sim.faults.set_spec("latency=30ms,methods=POST")
    clock = ManualClock(at("2027-01-10T03:00:05Z"))
    s = scheduler(sim, jobs, clock)
    async with anyio.create_task_group() as tg:
        await s.tick(tg)
        with anyio.fail_after(10):
            while not rows(sim, "SELECT COUNT(*) FROM device_tag WHERE tag_key='nightly'")[0][0]:
                await anyio.sleep(0.01)
        s.stop()
    [result] = s.results
    assert result.state is SlotState.INTERRUPTED
    assert result.detail.startswith("stop requested: dispatch stopped, journal flushed; continue with "
                                    f"`bulkops resume {result.run_id}`")
    journal = Journal.open(run_dir(result.run_id))
    assert journal.state() is RunState.INTERRUPTED
    left = journal.counts()["not_attempted"]
    journal.close()
    assert 0 < left < 160
    clock.advance(timedelta(days=1))
    assert await s.run_due() == []  # stopped: no new slot starts
    sim.faults.set_spec("none")
    plan, journal = load_run(run_dir(result.run_id))
    async with open_client(sim.url, sim.api_key, plan.options) as client:
        summary = await run_plan(plan, client, journal, handle_signals=False)
    journal.close()
    assert summary.state is RunState.DONE and summary.counts["not_attempted"] == 0
    assert rows(sim, "SELECT COUNT(*) FROM device_tag WHERE tag_key='nightly'") == [(160,)]
