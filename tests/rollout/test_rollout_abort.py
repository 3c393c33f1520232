"""The abort rule end to end, over HTTP against the simulator on a virtual clock: an abort at stage 2
that undoes, write failures that trip it mid-stage, gate failures it tolerates, an undo interrupted and
resumed, an undo refused by a guard, and the exit codes."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from bulkops import new_run, open_client
from bulkops.apply.engine import RunControl
from bulkops.apply.rollout import apply_rollout
from bulkops.cli import rollout as rollout_cli
from bulkops.cli.main import main
from bulkops.errors import ExitCode
from bulkops.journal.gates import EventKind, Phase, Verdict
from bulkops.model import ChangeKind, Outcome, RolloutProgress, RunState
from bulkops.sim.devices import fraction_of
from bulkops.sim.server import SimServer
from tests.conftest import addressed_ids, human, writes

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


async def test_abort_at_stage_two_undoes(clock: VirtualClock, rsim: SimServer, home: Path) -> None:
    """Devices that go offline after the update fail stage 2's gate, the abort rule trips, no later stage is
    written, and the undo of everything the rollout changed is applied through the undo path."""
    rsim.devices.offline_fraction = 0.1
    plan = await plan_of(rsim, pin_job(
        'stages = ["5", "10%", "50%", "100%"]\nwait = "1m"\npoll_every = "20s"\ngate_timeout = "2m"\n'
        'abort = { failure_rate = "5%", failures = 2, min_attempted = 20 }\non_abort = "undo"',
        options="max_concurrency = 4"))
    stages = staged(plan)
    before = pins(rsim, [it.target_id for it in plan.items])
    summary, journal = await roll(rsim, plan, clock)
    offline = {t for s in (1, 2) for t in stages[s] if fraction_of(0, t, "fate") < 0.1}
    assert len(offline) >= 4 and len(offline & set(stages[1])) < 20
    assert summary.state is RunState.ABORTED
    attempted = len(stages[1]) + len(stages[2])
    assert summary.message.startswith(
        f"aborted at stage 2 of 4: failures {len(offline)} > max(2, 5% of {attempted} attempted); "
        "undone by run ")
    changed = {i for e in writes(rsim) for i in addressed_ids(e.url)}
    assert changed <= set(stages[1]) | set(stages[2])  # stage 1 + stage 2 (no overshoot between stages)
    assert len([j for j in journal.items() if j.outcome is Outcome.APPLIED]) <= attempted + 4
    assert pins(rsim, [it.target_id for it in plan.items]) == before  # the undo restored every pin
    store = store_of(journal)
    state = store.state()
    assert (state.phase, state.stage) == (Phase.ABORTED, 2) and state.undo_run
    assert {journal.items()[i].target_id for i in store.gate_failures()} == offline
    kinds = [e.kind for e in store.events()]
    assert kinds == [EventKind.GATE, EventKind.GATE, EventKind.ABORT, EventKind.UNDO]
    assert store.stages()[2].started_at is None  # stage 3 never started
    store.close()
    journal.close()


async def test_write_failures_trip_the_rule_mid_stage(clock: VirtualClock, rsim: SimServer,
                                                       home: Path) -> None:
    """Failed writes trip the abort rule inside a stage: dispatch stops at once, at most max_concurrency
    more writes go out, the rest is never attempted, and the run says aborted, where and why."""
    rsim.faults.set_spec("503=1,methods=POST")
    text = "\n".join([
        'name = "flag"', "[target]", 'resource = "device"', 'fleet = "acme/gateway"', "[action]",
        'type = "set_env"', 'name = "FEATURE_X"', 'value = "on"', "[rollout]", 'stages = ["100%"]',
        "abort = { failures = 0, min_attempted = 10 }", "[options]", "max_concurrency = 4",
        "max_attempts = 1",
    ]) + "\n"
    plan = await plan_of(rsim, text)
    assert plan.counts()["create"] == len(plan.items) > 500
    summary, journal = await roll(rsim, plan, clock)
    posts = [e for e in rsim.request_log.entries() if e.method == "POST"]
    assert 10 <= len(posts) <= 10 + 4  # the tripping failure, then at most max_concurrency in flight
    assert summary.state is RunState.ABORTED
    # the rule as it stood when it tripped
    assert summary.message == "aborted at stage 1 of 1: failures 10 > max(0, 0% of 10 attempted)"
    assert summary.counts["failed"] == len(posts)
    assert summary.counts["not_attempted"] == len(plan.items) - len(posts)
    journal.close()


async def test_gate_failures_within_the_rule_promote(home: Path) -> None:
    """Devices that give up on a bad release fail their gate; within the abort rule the rollout goes on,
    and the run says how many failed."""
    sim = start_rollout_sim(bad_release="acme/gateway@2.0.0", bad_release_fraction=0.05)
    try:
        clock = VirtualClock(sim)
        plan = await plan_of(sim, pin_job('stages = ["50%", "100%"]\nwait = "1m"\npoll_every = "30s"\n'
                                          'gate_timeout = "2m"\nabort = { failure_rate = "20%" }'))
        summary, journal = await roll(sim, plan, clock)
        stuck = {it.target_id for it in plan.items
                 if it.kind is ChangeKind.CHANGE and fraction_of(0, it.target_id, "bad-release") < 0.05}
        assert len(stuck) > 5
        assert summary.state is RunState.DONE
        assert summary.message == (f"rollout done: 2 stages; {len(stuck)} targets failed their gate "
                                   "(tolerated by the abort rule)")
        store = store_of(journal)
        assert [r.verdict for r in store.stages()] == [Verdict.FAIL, Verdict.FAIL]
        assert rollout_cli.exit_code(summary) is ExitCode.SOME_FAILED  # `bulkops apply` exits 1
        assert {journal.items()[i].target_id for i in store.gate_failures()} == stuck
        should = release_id(sim, "acme/gateway@2.0.0")
        assert all(r.startswith("runs release ") and r.endswith(f", should run {should}")
                   for r in store.gate_failures().values())
        store.close()
        journal.close()
    finally:
        sim.stop()


def test_cli_exit_codes_of_paused_and_aborted_runs(rsim: SimServer, home: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`bulkops resume` of a rollout whose gate is still unreadable exits 4 saying it paused; a rollout
    whose abort rule trips exits 7 saying where and why."""
    monkeypatch.setenv("BALENA_API_URL", rsim.url)
    monkeypatch.setenv("BALENA_API_KEY", rsim.api_key)
    clock = VirtualClock(rsim)
    rsim.faults.set_spec("outage=100s..400s")
    text = pin_job('stages = ["5", "100%"]\nwait = "2m"', options="max_attempts = 2")
    plan = anyio.run(plan_of, rsim, text)
    summary, journal = anyio.run(roll, rsim, plan, clock)
    journal.close()
    assert summary.state is RunState.PAUSED
    capsys.readouterr()
    # --force: the plan names the job "job.toml", a file that does not exist (resume checks the job file)
    assert main(["resume", journal.run_id, "--force"]) == ExitCode.RUN_FAILED  # the outage goes on
    err = human(capsys.readouterr().err)
    assert "bulkops: paused: gate inconclusive at stage 1 of 2 (GET " in err
    rsim.faults.set_spec("503=1,methods=POST")
    job = tmp_path / "flag.toml"
    job.write_text("\n".join([
        'name = "flag"', "[target]", 'resource = "device"', 'fleet = "acme/sensor"', "[action]",
        'type = "set_env"', 'name = "FEATURE_X"', 'value = "on"', "[rollout]", 'stages = ["100%"]',
        "abort = { failures = 0, min_attempted = 10 }", "[options]", "max_concurrency = 4",
        "max_attempts = 1"]) + "\n")
    assert main(["run", str(job), "--yes"]) == ExitCode.ROLLOUT_ABORTED
    err = human(capsys.readouterr().err)
    assert "bulkops: aborted at stage 1 of 1: failures 10 > max(0, 0% of 10 attempted)\n" in err


async def test_an_interrupted_undo_is_resumed(clock: VirtualClock, rsim: SimServer, home: Path) -> None:
    """A stop during the undo leaves the rollout interrupted with its undo run recorded; `resume` applies
    that same undo run to its end. The rollout callback saw every phase."""
    rsim.devices.offline_fraction = 0.2
    plan = await plan_of(rsim, pin_job('stages = ["20%", "100%"]\nwait = "1m"\npoll_every = "30s"\n'
                                       'gate_timeout = "1m"\non_abort = "undo"'))
    before = pins(rsim, [it.target_id for it in plan.items])
    control = RunControl()
    seen: list[RolloutProgress] = []

    def watch(p: RolloutProgress) -> None:
        seen.append(p)
        if p.phase == "undoing":
            control.stop()

    async with open_client(rsim.url, rsim.api_key, plan.options) as client:
        journal = new_run(plan)
        summary = await apply_rollout(plan, client, journal, new_run=new_run, clock=clock, control=control,
                                      on_rollout=watch)
    assert summary.state is RunState.INTERRUPTED
    store = store_of(journal)
    undo_run = store.state().undo_run
    assert undo_run and summary.message.endswith(f"its undo (run {undo_run}) was interrupted: "
                                                 f"`bulkops resume {journal.run_id}` continues it")
    phases = [p.phase for p in seen]
    assert [ph for i, ph in enumerate(phases) if i == 0 or phases[i - 1] != ph] == [
        "writing", "waiting", "gating", "undoing"]
    assert seen[-1].failures > seen[-1].allowed
    summary, journal = await roll(rsim, plan, clock, journal)
    assert summary.state is RunState.ABORTED and f"undone by run {undo_run} " in summary.message
    assert pins(rsim, [it.target_id for it in plan.items]) == before
    assert len(list((home / "runs").iterdir())) == 2  # the rollout and its one undo run
    store.close()
    journal.close()


async def test_an_undo_refused_by_a_guard_leaves_the_rollout_aborted(clock: VirtualClock, rsim: SimServer,
                                                                     home: Path) -> None:
    """A device moved out of allow_fleets meanwhile makes the undo's allowlist guard refuse it: nothing is
    undone, the rollout is aborted and says how to plan the undo by hand."""
    rsim.devices.offline_fraction = 0.2
    text = 'allow_fleets = ["acme/gateway"]\n' + pin_job(
        'stages = ["20%", "100%"]\nwait = "1m"\npoll_every = "30s"\ngate_timeout = "1m"\non_abort = "undo"')
    plan = await plan_of(rsim, text)
    moved = next(it.target_id for it in plan.items if it.stage == 1)
    clock.at(60, lambda: rsim.db.conn.execute("UPDATE device SET belongs_to__application = ? WHERE id = ?",
                                              (rsim.demo.fleets["acme/sensor"], moved)))
    summary, journal = await roll(rsim, plan, clock)
    assert summary.state is RunState.ABORTED
    assert summary.message.endswith(
        "; the undo was refused by a guard (fleet acme/sensor is not in allow_fleets (acme/gateway)): "
        f"plan it with `bulkops undo {journal.run_id}`")
    store = store_of(journal)
    assert store.state().undo_run is None and store.state().phase is Phase.ABORTED
    store.close()
    journal.close()
