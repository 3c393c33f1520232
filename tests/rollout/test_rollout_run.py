"""Rollouts end to end through the library, over HTTP against the simulator, on a virtual clock: stages
that complete, an outage that pauses, the rate form, stop requests, fleet targets, the default and filter
gates."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bulkops import apply_plan, new_run, open_client
from bulkops.apply.engine import RunControl
from bulkops.errors import InputError
from bulkops.journal.gates import EventKind, Phase, Verdict, parse_stamp
from bulkops.journal.rollout_report import report_json, summary_lines
from bulkops.model import RunState
from bulkops.sim.server import SimServer
from tests.conftest import addressed_ids, rows, writes

from .conftest import (
    VirtualClock,
    pin_job,
    pins,
    plan_of,
    release_id,
    roll,
    staged,
    start_rollout_sim,
    store_of,
)

pytestmark = pytest.mark.anyio
GATE_SELECT = "$select=id,uuid,is_online,is_running__release,should_be_running__release"


def gate_gets(sim: SimServer, start: int = 0) -> list[str]:
    return [e.url for e in sim.request_log.entries()[start:] if e.method == "GET" and GATE_SELECT in e.url]


@pytest.fixture
def big_sim() -> Iterator[SimServer]:
    server = start_rollout_sim(seed_demo=6000)
    try:
        yield server
    finally:
        server.stop()


async def test_pin_in_four_stages_completes(big_sim: SimServer, home: Path) -> None:
    """A pin of a few thousand devices in four stages: each stage written, waited for, gated in batched
    GETs of at most 200 ids, passed, promoted; every device ends pinned and running the release."""
    sim, clock = big_sim, VirtualClock(big_sim)
    plan = await plan_of(sim, pin_job('stages = ["5", "10%", "50%", "100%"]\nwait = "2m"\n'
                                      'poll_every = "30s"\ngate_timeout = "10m"'))
    stages = staged(plan)
    targets = [t for s in sorted(stages) for t in stages[s]]
    assert len(stages) == 4 and len(targets) > 2000 and len(stages[1]) == 5
    start = len(sim.request_log.entries())
    summary, journal = await roll(sim, plan, clock)
    assert summary.state is RunState.DONE and summary.message == "rollout done: 4 stages"
    wanted = release_id(sim, "acme/gateway@2.0.0")
    assert set(pins(sim, targets).values()) == {wanted}
    listed = ",".join(map(str, targets))
    running = rows(sim, f"SELECT DISTINCT is_running__release, is_online FROM device WHERE id IN ({listed})")
    assert running == [(wanted, 1)]
    store = store_of(journal)
    records = store.stages()
    assert [(r.stage, r.targets, r.verdict, r.passed, r.failed, r.polls) for r in records] == [
        (s, len(stages[s]), Verdict.PASS, len(stages[s]), 0, 2) for s in (1, 2, 3, 4)]
    for r in records:  # polled only after the wait; the next stage starts after this one's gate passed
        assert r.written_at and r.gate_started_at and r.ended_at and r.started_at
        assert parse_stamp(r.gate_started_at) - parse_stamp(r.written_at) == timedelta(minutes=2)
    for before, after in itertools.pairwise(records):
        assert before.ended_at is not None and after.started_at is not None
        assert parse_stamp(after.started_at) >= parse_stamp(before.ended_at)
    decisions = [e for e in store.events() if e.kind is EventKind.GATE]
    assert [(e.stage, e.verdict) for e in decisions] == [(s, Verdict.PASS) for s in (1, 2, 3, 4)]
    gets = gate_gets(sim, start)
    assert all(len(addressed_ids(url)) <= 200 for url in gets)
    assert len(gets) == sum(2 * math.ceil(len(stages[s]) / 200) for s in stages)  # two polls per stage
    # writes only ever address the stage being written: stage k's ids all come before stage k+1's
    order = {t: s for s, ids in stages.items() for t in ids}
    seen_stages = [order[i] for e in writes(sim) for i in addressed_ids(e.url)]
    assert seen_stages == sorted(seen_stages)
    text = "\n".join(summary_lines(journal))
    assert "rollout  stage 4 of 4: done" in text
    report = report_json(journal)
    assert report is not None and [d["verdict"] for d in report["decisions"]] == ["pass"] * 4
    assert all(d["at"].endswith("Z") for d in report["decisions"])
    store.close()
    journal.close()


async def test_outage_while_polling_pauses_and_never_promotes(clock: VirtualClock, rsim: SimServer,
                                                              home: Path) -> None:
    """503s while the gate is polled make the verdict inconclusive: the run pauses, stage 2 is not written;
    resumed after the outage, the gate is polled again and the rollout completes."""
    rsim.faults.set_spec("outage=100s..400s")
    plan = await plan_of(rsim, pin_job('stages = ["5", "100%"]\nwait = "2m"\npoll_every = "30s"\n'
                                       'gate_timeout = "10m"', options="max_attempts = 2"))
    stages = staged(plan)
    summary, journal = await roll(rsim, plan, clock)
    assert summary.state is RunState.PAUSED
    assert summary.message.startswith("paused: gate inconclusive at stage 1 of 2 (GET ")
    paused_window = store_of(journal).stage(1).gate_started_at
    assert summary.message.endswith(f"`bulkops resume {journal.run_id}` polls it again")
    assert {i for e in writes(rsim) for i in addressed_ids(e.url)} == set(stages[1])
    clock.advance(100)  # still in the outage: resumed, it pauses again without writing
    summary, journal = await roll(rsim, plan, clock, journal)
    assert summary.state is RunState.PAUSED
    assert {i for e in writes(rsim) for i in addressed_ids(e.url)} == set(stages[1])
    clock.advance(300)
    summary, journal = await roll(rsim, plan, clock, journal)
    assert summary.state is RunState.DONE
    store = store_of(journal)
    assert store.stage(1).gate_started_at != paused_window  # a fresh gate window after the pause
    assert [e.verdict for e in store.events()] == [Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE, Verdict.PASS,
                                                   Verdict.PASS]
    store.close()
    journal.close()


async def test_rate_form_grows_one_minute_stages(clock: VirtualClock, rsim: SimServer, home: Path) -> None:
    """The rate form's stages grow by the factor every grow_after targets and start a minute apart."""
    plan = await plan_of(rsim, pin_job(
        'rate = { start_per_minute = 5, growth = 2.0, grow_after = 10, max_per_minute = 40 }\nwait = 0\n'
        'gate = "none"', fleet="acme/gateway-next", filt="is_online eq true"))
    sizes = [len(v) for _, v in sorted(staged(plan).items())]
    assert sizes[:4] == [5, 5, 10, 20] and all(n <= 40 for n in sizes) and sum(sizes) == len(plan.items) > 60
    summary, journal = await roll(rsim, plan, clock)
    assert summary.state is RunState.DONE
    store = store_of(journal)
    starts = [parse_stamp(r.started_at or "") for r in store.stages()]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert gaps == [60.0] * (len(starts) - 1)
    per_minute = [r.targets for r in store.stages()]
    assert per_minute == sizes and per_minute[3] == 4 * per_minute[0]
    store.close()
    journal.close()


async def test_stop_requests_in_the_wait_and_in_polling_resume(clock: VirtualClock, rsim: SimServer,
                                                               home: Path) -> None:
    """Ctrl-C (a stop request) during a wait or while polling ends the run interrupted, sending nothing
    more; resumed, the rollout goes on from that phase, within the same gate window."""
    rsim.devices.converge_delay = 90
    plan = await plan_of(rsim, pin_job('stages = ["5", "100%"]\nwait = "1m"\npoll_every = "30s"\n'
                                       'gate_timeout = "10m"'))
    control = RunControl()
    clock.at(30, control.stop)
    summary, journal = await roll(rsim, plan, clock, control=control)
    assert summary.state is RunState.INTERRUPTED
    assert summary.message == (f"stop requested at stage 1 of 2: the rollout resumes where it was with "
                               f"`bulkops resume {journal.run_id}`")
    store = store_of(journal)
    assert store.state().phase is Phase.WAITING
    control = RunControl()
    clock.at(clock.offset + 40, control.stop)
    summary, journal = await roll(rsim, plan, clock, journal, control=control)
    assert summary.state is RunState.INTERRUPTED and store.state().phase is Phase.GATING
    window = store.stage(1).gate_started_at
    sent = len(writes(rsim))
    summary, journal = await roll(rsim, plan, clock, journal)
    assert summary.state is RunState.DONE
    assert store.stage(1).gate_started_at == window and len(writes(rsim)) > sent
    store.close()
    journal.close()


async def test_a_rollout_plan_is_never_applied_in_one_go(rsim: SimServer, home: Path) -> None:
    """apply_plan refuses a rollout plan: it is applied stage by stage, never all at once."""
    plan = await plan_of(rsim, pin_job('stages = ["5", "100%"]'))
    async with open_client(rsim.url, rsim.api_key, plan.options) as client:
        journal = new_run(plan)
        with pytest.raises(InputError) as info:
            await apply_plan(plan, client, journal)
    assert str(info.value) == ("the plan is a staged rollout: apply it with run_plan or apply_rollout, "
                               "which run one stage at a time with its gates")
    assert writes(rsim) == []
    journal.close()


async def test_fleet_targets_are_gated_on_their_devices(clock: VirtualClock, rsim: SimServer,
                                                        home: Path) -> None:
    """A rollout of fleet target releases gates each fleet on all its devices: offline ones keep the fleet
    from passing, and the gate failure names how many and one of them."""
    text = "\n".join([
        'name = "fleet-pins"', "[target]", 'resource = "fleet"', 'fleets = ["acme/gateway", "acme/sensor"]',
        "[action]", 'type = "pin"', 'release = "1.4.0"', "[rollout]", 'stages = ["1", "100%"]',
        'wait = "1m"', 'poll_every = "30s"', 'gate_timeout = "1m"', 'abort = { failures = 5 }']) + "\n"
    plan = await plan_of(rsim, text)
    assert [it.stage for it in plan.items] in ([1, 2], [2, 1])
    summary, journal = await roll(rsim, plan, clock)
    assert summary.state is RunState.DONE  # two failed fleets are within failures = 5
    store = store_of(journal)
    reasons = list(store.gate_failures().values())
    assert len(reasons) == 2 and all(" of its " in r and r.endswith(": offline") for r in reasons)
    first = min(plan.items, key=lambda it: it.stage)
    offline = rows(rsim, "SELECT COUNT(*), (SELECT COUNT(*) FROM device WHERE belongs_to__application = ?) "
                         "FROM device WHERE belongs_to__application = ? AND is_online = 0",
                   first.target_id, first.target_id)[0]
    reason = store.gate_failures()[plan.items.index(first)]
    assert reason.startswith(f"{offline[0]} of its {offline[1]} devices do not pass, e.g. ")
    store.close()
    journal.close()


async def test_status_gate_and_filter_gate(clock: VirtualClock, rsim: SimServer, home: Path) -> None:
    """For an env var change the default gate wants every device online and operational (one still
    updating fails it); a filter gate wants every device to match the filter."""
    text = "\n".join([
        'name = "env-gate"', "[target]", 'resource = "device"', 'fleet = "acme/sensor"',
        'filter = "is_online eq true"', "[action]", 'type = "set_env"', 'name = "FEATURE_Y"', 'value = "on"',
        "[rollout]", 'stages = ["10", "100%"]', 'wait = "10s"', 'poll_every = "10s"', 'gate_timeout = "20s"',
        "abort = { failures = 1 }"]) + "\n"
    plan = await plan_of(rsim, text)
    busy = next(it for it in plan.items if it.stage == 1)
    rsim.db.conn.execute("UPDATE device SET status = 'Downloading', download_progress = 40 WHERE id = ?",
                         (busy.target_id,))
    summary, journal = await roll(rsim, plan, clock)
    assert summary.state is RunState.DONE
    store = store_of(journal)
    assert store.gate_failures() == {plan.items.index(busy): "overall_status is updating"}
    assert any("$select=id,uuid,is_online,overall_status" in e.url for e in rsim.request_log.entries())
    store.close()
    journal.close()
    version = "balenaOS 6.1.2"
    gated = pin_job(f'stages = ["100%"]\ngate = "os_version eq \'{version}\'"\nwait = 0\npoll_every = "10s"\n'
                    'gate_timeout = "10s"\nabort = { failure_rate = "100%" }', name="filter-gate")
    plan = await plan_of(rsim, gated)
    summary, journal = await roll(rsim, plan, clock)
    assert summary.state is RunState.DONE
    versions = dict(rows(rsim, "SELECT id, os_version FROM device"))
    store = store_of(journal)
    failed = {plan.items[i].target_id for i in store.gate_failures()}
    assert failed == {it.target_id for it in plan.items if it.stage and versions[it.target_id] != version}
    assert set(store.gate_failures().values()) == {"does not match the gate filter"}
    store.close()
    journal.close()


async def test_tag_rollouts_have_no_default_gate(clock: VirtualClock, rsim: SimServer, home: Path) -> None:
    """set_tag has no default gate: its stages pass without reading any device back."""
    text = "\n".join([
        'name = "tag-ring"', "[target]", 'resource = "device"', 'fleet = "acme/sensor"', "[action]",
        'type = "set_tag"', 'key = "wave"', 'value = "1"', "[rollout]", 'stages = ["10", "100%"]']) + "\n"
    plan = await plan_of(rsim, text)
    start = len(rsim.request_log.entries())
    summary, journal = await roll(rsim, plan, clock)
    assert summary.state is RunState.DONE
    store = store_of(journal)
    assert [(e.verdict, e.detail) for e in store.events()] == [(Verdict.PASS, "no gate")] * 2
    assert not any(e.url.startswith("/v7/device?") for e in rsim.request_log.entries()[start:])
    store.close()
    journal.close()


async def test_an_unreadable_stop_switch_pauses(clock: VirtualClock, rsim: SimServer, home: Path) -> None:
    """When the stop switch cannot be read the rollout pauses before writing anything."""
    plan = await plan_of(rsim, pin_job('stages = ["5", "100%"]\nstop_switch = "BULKOPS_STOP"',
                                       options="max_attempts = 2"))
    rsim.faults.set_spec("outage=0s..3600s,methods=GET")
    summary, journal = await roll(rsim, plan, clock)
    assert summary.state is RunState.PAUSED
    assert summary.message.startswith(
        "paused: the stop switch BULKOPS_STOP cannot be read at stage 1 of 2 (GET ")
    assert writes(rsim) == []
    journal.close()
