"""The scheduler loop driven tick by tick on a manual clock, against the simulator over HTTP."""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from bulkops.journal.journal import SENT, Journal
from bulkops.journal.runs import run_dir
from bulkops.schedule import status
from bulkops.schedule.clock import ManualClock
from bulkops.schedule.locks import job_lock
from bulkops.schedule.store import SlotState
from bulkops.sim.server import SimServer
from tests.conftest import rows, writes
from tests.schedule.conftest import at, scheduler, tag_job, write

pytestmark = pytest.mark.anyio
BERLIN_NIGHT = '{ cron = "30 2 * * *", timezone = "Europe/Berlin" }'


def tags(sim: SimServer, key: str = "nightly") -> dict[str, int]:
    return dict(rows(sim, "SELECT value, COUNT(*) FROM device_tag WHERE tag_key=? GROUP BY value", key))


async def test_a_due_slot_runs_once(sim: SimServer, jobs: Path, home: Path) -> None:
    """A slot due 10 s ago runs plan → apply; ticking again then or later in the hour sends nothing."""
    write(jobs, "tag.toml", tag_job("tag", schedule='"0 3 * * *"'))
    clock = ManualClock(at("2027-01-10T03:00:10Z"))
    s = scheduler(sim, jobs, clock)
    [result] = await s.run_due()
    assert (result.state, result.slot) == (SlotState.DONE, at("2027-01-10T03:00:00Z"))
    assert result.summary is not None and result.summary.counts["applied"] == 82
    assert tags(sim) == {"yes": 82}
    sent = len(writes(sim))
    assert await s.run_due() == []
    clock.advance(timedelta(minutes=50))
    assert await s.run_due() == []
    assert len(writes(sim)) == sent
    assert [r.state for r in s.store.slots("tag")] == [SlotState.DONE]


async def test_first_sight_does_not_run_an_old_slot(sim: SimServer, jobs: Path, home: Path) -> None:
    """A job first seen 5 minutes after its slot starts with the next slot: nothing runs or is missed."""
    write(jobs, "tag.toml", tag_job("tag", schedule='"0 3 * * *"'))
    s = scheduler(sim, jobs, ManualClock(at("2027-01-10T03:05:00Z")))
    assert await s.run_due() == []
    assert s.store.slots("tag") == [] and writes(sim) == []


async def run_ticks(sim: SimServer, jobs: Path, start: str, end: str, every: timedelta) -> list[str]:
    clock = ManualClock(at(start))
    s = scheduler(sim, jobs, clock)
    ran: list[str] = []
    while clock.now() <= at(end):
        ran += [f"{r.slot:%Y-%m-%dT%H:%M:%SZ} {r.state}" for r in await s.run_due()]
        clock.advance(every)
    assert all(r.state is not SlotState.SKIPPED for r in s.store.slots("night"))
    return ran


async def test_spring_forward_night_runs_once_at_the_jump(sim: SimServer, jobs: Path, home: Path) -> None:
    """30 2 * * * in Berlin, ticking every 10 min over the 2027-03-28 change: one run a night, that night at
    03:00 CEST (01:00Z) since 02:30 does not exist — as cron does."""
    write(jobs, "night.toml", tag_job("night", schedule=BERLIN_NIGHT))
    ran = await run_ticks(sim, jobs, "2027-03-27T00:00:00Z", "2027-03-29T03:00:00Z", timedelta(minutes=10))
    assert ran == ["2027-03-27T01:30:00Z done", "2027-03-28T01:00:00Z nothing_to_do",
                   "2027-03-29T00:30:00Z nothing_to_do"]


async def test_fall_back_night_runs_once(sim: SimServer, jobs: Path, home: Path) -> None:
    """30 2 * * * in Berlin over the 2026-10-25 change: 02:30 comes twice that night, the job runs once."""
    write(jobs, "night.toml", tag_job("night", schedule=BERLIN_NIGHT))
    ran = await run_ticks(sim, jobs, "2026-10-24T23:00:00Z", "2026-10-26T03:00:00Z", timedelta(minutes=10))
    assert ran == ["2026-10-25T00:30:00Z done", "2026-10-26T01:30:00Z nothing_to_do"]


@pytest.mark.parametrize(("policy", "runs", "skipped"), [
    ("skip", [], {"missed": 5}),
    ("latest", ["2027-01-10T05:00:00Z"], {"too_late": 2, "superseded": 2}),
    ("all", ["2027-01-10T03:00:00Z", "2027-01-10T04:00:00Z", "2027-01-10T05:00:00Z"], {"too_late": 2}),
])
async def test_missed_policy_after_downtime(sim: SimServer, jobs: Path, home: Path, policy: str,
                                            runs: list[str], skipped: dict[str, int]) -> None:
    """An hourly job whose scheduler was down from 00:30 to 05:10: every missed slot is either run (by the
    policy, inside catch_up 2.5h) or journaled as skipped with its reason — none is dropped silently."""
    write(jobs, "hourly.toml", tag_job("hourly", schedule=f'{{ cron = "0 * * * *", missed = "{policy}", '
                                                          'catch_up = "150m" }'))
    clock = ManualClock(at("2027-01-10T00:00:05Z"))
    assert [r.state for r in await scheduler(sim, jobs, clock).run_due()] == [SlotState.DONE]
    clock.set(at("2027-01-10T05:10:00Z"))  # a new process, as after a restart
    s = scheduler(sim, jobs, clock)
    results = await s.run_due()
    assert [f"{r.slot:%Y-%m-%dT%H:%M:%SZ}" for r in results] == runs
    assert all(r.state is SlotState.NOTHING_TO_DO for r in results)
    slots = s.store.slots("hourly")
    assert [r.slot for r in slots] == [f"2027-01-10T0{h}:00:00Z" for h in range(6)]
    counted: dict[str, int] = {}
    for r in slots:
        if r.state is SlotState.SKIPPED:
            counted[r.reason] = counted.get(r.reason, 0) + 1
            assert r.detail
    assert counted == skipped
    assert await s.run_due() == []


async def test_a_slot_is_skipped_while_the_job_still_runs(sim: SimServer, jobs: Path, home: Path) -> None:
    """A job whose previous run still holds its lock does not start again: the slot is journaled as an
    overlap and nothing is sent."""
    write(jobs, "tag.toml", tag_job("tag", schedule='"0 3 * * *"'))
    s = scheduler(sim, jobs, ManualClock(at("2027-01-10T03:00:05Z")))
    with job_lock("tag"):
        [result] = await s.run_due()
    assert (result.state, result.reason) == (SlotState.SKIPPED, "overlap")
    assert result.detail == "another run of the job holds its lock"
    assert sim.request_log.entries() == []
    [record] = s.store.slots("tag")
    assert (record.state, record.reason) == (SlotState.SKIPPED, "overlap")


async def test_one_failing_job_does_not_stop_the_others(sim: SimServer, jobs: Path, home: Path) -> None:
    """In one tick: a fleet that does not exist fails, a plan past expect.max is refused, an invalid file is
    reported — and the healthy job still runs."""
    write(jobs, "a-missing.toml", tag_job("missing", schedule='"0 3 * * *"', fleet="acme/nope"))
    write(jobs, "b-bounded.toml", tag_job("bounded", schedule='"0 3 * * *"', fleet="acme/gateway")
          .replace("[action]", "expect = { max = 10 }\n[action]"))
    write(jobs, "c-broken.toml", tag_job("broken", schedule='"0 3 * *"'))
    write(jobs, "d-good.toml", tag_job("good", schedule='"0 3 * * *"'))
    s = scheduler(sim, jobs, ManualClock(at("2027-01-10T03:00:05Z")))
    results = {r.job: r for r in await s.run_due()}
    assert {k: r.state for k, r in results.items()} == {
        "missing": SlotState.FAILED, "bounded": SlotState.REFUSED, "good": SlotState.DONE}
    assert "fleet 'acme/nope' not found" in results["missing"].detail
    assert results["bounded"].detail == ("expect.max is 10 but the job targets 160 devices; narrow the "
                                         "filter, or raise expect.max")
    [bad] = s.jobs.invalid()
    assert bad.path.name == "c-broken.toml" and "4 fields instead of 5" in bad.error
    assert tags(sim) == {"yes": 82}


async def test_changed_new_and_removed_files_are_picked_up(sim: SimServer, jobs: Path, home: Path) -> None:
    """A rewritten job file is used from its next slot, a new one is scheduled, a removed one stops."""
    path = write(jobs, "tag.toml", tag_job("tag", schedule='"0 * * * *"', value="v1"))
    clock = ManualClock(at("2027-01-10T03:00:05Z"))
    s = scheduler(sim, jobs, clock)
    assert [r.job for r in await s.run_due()] == ["tag"]
    assert tags(sim) == {"v1": 82}
    write(jobs, "tag.toml", tag_job("tag", schedule='"0 * * * *"', value="v2"))
    write(jobs, "other.toml", tag_job("other", schedule='"0 * * * *"', key="other"))
    clock.set(at("2027-01-10T04:00:05Z"))
    assert sorted((r.job, r.state) for r in await s.run_due()) == [("other", SlotState.DONE),
                                                                  ("tag", SlotState.DONE)]
    assert tags(sim) == {"v2": 82} and tags(sim, "other") == {"yes": 82}
    path.unlink()
    clock.set(at("2027-01-10T05:00:05Z"))
    assert [r.job for r in await s.run_due()] == ["other"]
    assert sorted(s.jobs.scheduled()) == ["other"]
    data = status.status(s.jobs, s.store, clock.now())
    shown = {e["job"]: e for e in data["jobs"]}
    assert (shown["tag"]["in_directory"], shown["tag"]["last"]["state"]) == (False, "done")
    assert "tag  (no longer in the directory)" in status.status_text(data)


async def test_next_wakeup_is_the_next_due_time_or_the_reload_interval(sim: SimServer, jobs: Path,
                                                                       home: Path) -> None:
    """The loop sleeps until the next due time, and never longer than 15 s (to pick up changed files)."""
    write(jobs, "tag.toml", tag_job("tag", schedule='"0 3 * * *"'))
    clock = ManualClock(at("2027-01-10T02:59:50Z"))
    s = scheduler(sim, jobs, clock)
    assert await s.run_due() == []
    assert s.next_wakeup(clock.now()) == at("2027-01-10T03:00:00Z")
    clock.set(at("2027-01-10T01:00:00Z"))
    assert s.next_wakeup(clock.now()) == at("2027-01-10T01:00:15Z")


async def test_stop_skips_the_slots_not_started(sim: SimServer, jobs: Path, home: Path) -> None:
    """missed = "all" with three slots to catch up, stopped during the first run: the first is interrupted,
    the two not started are journaled as skipped (stopped)."""
    write(jobs, "tag.toml", tag_job("tag", schedule='{ cron = "0 * * * *", missed = "all", catch_up = "4h" }',
                                    fleet="acme/gateway"))
    clock = ManualClock(at("2027-01-10T03:00:05Z"))
    s = scheduler(sim, jobs, clock)
    s.store.set_cursor("tag", at("2027-01-10T00:30:00Z"), clock.now())  # last decided before a downtime
    sim.faults.set_spec("latency=30ms,methods=POST")
    async with anyio.create_task_group() as tg:
        await s.tick(tg)
        with anyio.fail_after(10):
            while not rows(sim, "SELECT COUNT(*) FROM device_tag WHERE tag_key='nightly'")[0][0]:
                await anyio.sleep(0.01)
        s.stop()
    states = [(r.slot, r.state, r.reason) for r in s.store.slots("tag")]
    assert states == [("2027-01-10T01:00:00Z", SlotState.INTERRUPTED, ""),
                      ("2027-01-10T02:00:00Z", SlotState.SKIPPED, "stopped"),
                      ("2027-01-10T03:00:00Z", SlotState.SKIPPED, "stopped")]
    assert s.store.get("tag", at("2027-01-10T02:00:00Z")).detail == (  # type: ignore[union-attr]
        "the scheduler stopped before this slot started")


async def test_serve_stops_on_sigterm_and_at_once_on_a_second(sim: SimServer, jobs: Path, home: Path) -> None:
    """serve() turns SIGTERM into a stop; a second SIGTERM aborts the requests in flight, which stay 'sent'
    in the journal (read back on resume) instead of being waited for."""
    write(jobs, "tag.toml", tag_job("tag", schedule='"0 3 * * *"', fleet="acme/gateway"))
    sim.faults.set_spec("latency=2s,methods=POST")
    clock = ManualClock(at("2027-01-10T03:00:05Z"))
    s = scheduler(sim, jobs, clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(s.serve)
        with anyio.fail_after(10):
            while (running := s.store.running("tag")) is None or not running.run_id:
                await anyio.sleep(0.01)
            await anyio.sleep(0.2)  # requests are in flight (each takes 2 s)
        os.kill(os.getpid(), signal.SIGTERM)
        await anyio.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)
    [result] = s.results
    assert result.state is SlotState.INTERRUPTED
    journal = Journal.open(run_dir(result.run_id))
    assert SENT in journal.states().values()
    journal.close()


async def test_status_notes_a_slot_whose_process_died(sim: SimServer, jobs: Path, home: Path) -> None:
    """A slot left running by a process that is gone is shown with a note, and is not run again."""
    write(jobs, "tag.toml", tag_job("tag", schedule='"0 3 * * *"'))
    clock = ManualClock(at("2027-01-10T03:00:05Z"))
    s = scheduler(sim, jobs, clock)
    s.decide(clock.now())  # claimed, as by a process killed before it ran the slot
    s.store.start("tag", at("2027-01-10T03:00:00Z"), clock.now())
    s.jobs.scan()
    [entry] = status.status(s.jobs, s.store, clock.now())["jobs"]
    assert entry["last"]["state"] == "running"
    assert entry["last"]["note"] == ("no process holds the job: the process that ran this slot ended without "
                                     "finishing it")
    assert await scheduler(sim, jobs, clock).run_due() == []
    assert writes(sim) == []


async def test_two_files_with_one_job_name_schedule_the_first(sim: SimServer, jobs: Path, home: Path) -> None:
    """Two scheduled files with the same name: the first (in path order) runs, the second is reported."""
    write(jobs, "a.toml", tag_job("same", schedule='"0 3 * * *"'))
    write(jobs, "b.toml", tag_job("same", schedule='"0 3 * * *"', key="other"))
    s = scheduler(sim, jobs, ManualClock(at("2027-01-10T03:00:05Z")))
    assert [(r.job, r.state) for r in await s.run_due()] == [("same", SlotState.DONE)]
    assert tags(sim) == {"yes": 82} and tags(sim, "other") == {}
    [bad] = s.jobs.invalid()
    assert bad.error == (f"{jobs}/b.toml: job name 'same' is used by {jobs}/a.toml too: each scheduled job "
                         "needs its own name (the name is half of the run key)")
