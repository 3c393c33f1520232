"""A staged rollout: the plan applied one stage at a time, a gate between stages (see docs/rollout.md).

Per stage: the stop switch is read, the stage's items go through the engine (``apply_plan(only=…)``),
the rollout waits ``wait``, then polls the gate until every device of the stage passes or
``gate_timeout`` ends. Verdicts: pass, fail (the targets that never passed count as failures), or
inconclusive (the API could not be read: the run pauses, never promotes). The abort rule is checked
whenever an outcome is journaled (mid-stage too: dispatch stops at once, and only the requests already
in flight — at most ``max_concurrency`` — still go out) and after each gate. ``approve = "manual"``
ends the process after each passing stage in the durable state "awaiting approval".

Everything the loop decides is journaled first (:mod:`bulkops.journal.gates`), so a crash or Ctrl-C at
any point resumes where it was: mid-stage, in the wait (only what is left of it), while polling
(within the same timeout), awaiting approval; a gate that passed is never polled again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import structlog

from bulkops.apply import gate
from bulkops.apply.engine import FATAL, ProgressCallback, RunControl, apply_plan
from bulkops.apply.rollback import undo_rollout
from bulkops.apply.summary import summarize
from bulkops.apply.tally import Clock, SystemClock, Tally
from bulkops.errors import AuthError, RemoteError, RetryAfterTooLongError
from bulkops.journal.gates import EventKind, GateStore, Phase, Verdict, parse_stamp
from bulkops.journal.journal import Journal, Outcomes
from bulkops.model import Approve, OnAbort, Outcome, Plan, RolloutProgress, RunState, RunSummary
from bulkops.plan.guards import noun

if TYPE_CHECKING:
    from bulkops.api.client import Client

__all__ = ["Clock", "SystemClock", "apply_rollout"]

log = structlog.get_logger("bulkops.rollout")
RATE_STAGE = 60.0  # seconds: a stage of the rate form is one minute of targets
RolloutCallback = Callable[[RolloutProgress], None]


class _Rollout:
    def __init__(self, plan: Plan, client: Client, journal: Journal, store: GateStore, *, control: RunControl,
                 clock: Clock, on_progress: ProgressCallback | None, on_rollout: RolloutCallback | None,
                 notify: Callable[[str], None], new_run: Callable[[Plan], Journal]) -> None:
        assert plan.rollout is not None
        self.plan, self.rollout, self.client = plan, plan.rollout, client
        self.journal, self.store = journal, store
        self.control, self.clock, self.notify, self.new_run = control, clock, notify, new_run
        self.on_progress, self.on_rollout = on_progress, on_rollout
        self.members: dict[int, list[int]] = {}
        for index, it in enumerate(plan.items):
            if it.stage > 0:
                self.members.setdefault(it.stage, []).append(index)
        self.order = sorted(self.members)
        self.count = self.order[-1] if self.order else 0
        self.started = time.monotonic()
        self.tally = Tally(plan.rollout.abort)
        self.stage_control = RunControl(control.grace)
        self.tripped: str | None = None
        self.halt: tuple[RunState, str] | None = None  # a stop switch or an unreadable one, mid-stage
        self.switch_read: datetime | None = None

    # --- the abort rule --------------------------------------------------------------------------

    def _on_record(self, outcomes: Sequence[Outcomes]) -> None:
        self.tally.count(outcomes)
        if self.tripped is None and (rule := self.tally.crossed()) is not None:
            self.tripped = rule
            log.warning("bulkops.rollout.tripped", rule=rule, attempted=self.tally.attempted,
                        failures=self.tally.failures)
            self.stage_control.stop()

    # --- helpers ---------------------------------------------------------------------------------

    def _show(self, stage: int, phase: str, passed: int = 0, failed: int = 0, pending: int = 0) -> None:
        if self.on_rollout is not None:
            targets = len(self.members.get(stage, ()))
            t = self.tally
            self.on_rollout(RolloutProgress(stage, self.count, phase, targets, passed, failed, pending,
                                            t.failures, t.attempted, t.allowed()))

    def _finish(self, state: RunState, message: str) -> RunSummary:
        self.journal.set_state(state, message)
        log.info("bulkops.rollout.finished", state=state.value, message=message)
        return summarize(self.journal, client_stats=self.client.statistics(), state=state, message=message,
                         elapsed=time.monotonic() - self.started)

    def stopped(self, reason: str) -> RunSummary:
        return self._finish(RunState.STOPPED, reason)

    def _where(self, stage: int) -> str:
        return f"stage {stage} of {self.count}"

    async def _sleep(self, seconds: float) -> bool:
        """Sleep on the clock; False when a stop was requested (at once, or meanwhile)."""
        if self.control.stop_requested.is_set():
            return False
        if seconds > 0:
            async with anyio.create_task_group() as tg:

                async def early() -> None:
                    await self.control.stop_requested.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(early)
                await self.clock.sleep(seconds)
                tg.cancel_scope.cancel()
        return not self.control.stop_requested.is_set()

    def _interrupted(self, stage: int) -> RunSummary:
        return self._finish(RunState.INTERRUPTED,
                            f"stop requested at {self._where(stage)}: the rollout resumes where it was "
                            f"with `bulkops resume {self.journal.run_id}`")

    async def _switch(self, stage: int) -> tuple[RunState, str] | None:
        """Read the stop switch (one GET): a stop, a pause when it cannot be read, or None."""
        name = self.rollout.stop_switch
        if name is None:
            return None
        self.switch_read = self.clock.now()
        try:
            where = await gate.stop_switch(self.client, name, self.plan.fleet_ids)
        except FATAL:
            raise
        except RemoteError as exc:
            return RunState.PAUSED, (f"paused: the stop switch {name} cannot be read at {self._where(stage)} "
                                     f"({exc}); `bulkops resume {self.journal.run_id}` goes on")
        if where is None:
            return None
        self.store.event(stage, EventKind.STOP, self.clock.now(), f"stop switch {name} set on fleet {where}")
        return RunState.STOPPED, (f"stopped: the stop switch {name} is set on fleet {where} "
                                  f"({self._where(stage)}); remove it, then "
                                  f"`bulkops resume {self.journal.run_id}`")

    async def _before_unit(self, stage: int) -> None:
        """Between batches: the stop switch, read at most once per poll interval."""
        if self.rollout.stop_switch is None or self.halt is not None:
            return
        last = self.switch_read
        if last is not None and (self.clock.now() - last).total_seconds() < self.rollout.poll_every:
            return
        self.halt = await self._switch(stage)
        if self.halt is not None:
            self.stage_control.stop()

    def _halted(self) -> tuple[RunState, str] | None:
        """What the stop switch decided during the stage's dispatch (set from ``_before_unit``)."""
        return self.halt

    # --- one stage -------------------------------------------------------------------------------

    async def _link(self) -> None:
        """The caller's stop (Ctrl-C) stops the stage's dispatch; a second one cancels in-flight requests."""
        await self.control.stop_requested.wait()
        self.stage_control.stop()
        await self.control.abort_requested.wait()
        self.stage_control.abort()

    async def _write(self, stage: int) -> RunSummary | None:
        earlier = [s for s in self.order if s < stage]
        if earlier and self.rollout.rate is not None:
            previous = self.store.stage(earlier[-1]).started_at
            if previous is not None:
                due = parse_stamp(previous) + timedelta(seconds=RATE_STAGE)
                left = (due - self.clock.now()).total_seconds()
                if not await self._sleep(left):
                    return self._interrupted(stage)
        self.store.stage_started(stage, self.clock.now())
        members = self.members[stage]
        self.notify(f"{self._where(stage)}: writing {noun(self.plan.target_resource, len(members))}")
        self._show(stage, Phase.WRITING.value)
        self.stage_control = RunControl(self.control.grace)
        self.halt, self.switch_read = None, None

        async def before() -> None:
            await self._before_unit(stage)

        async with anyio.create_task_group() as tg:
            tg.start_soon(self._link)
            summary = await apply_plan(self.plan, self.client, self.journal, on_progress=self.on_progress,
                                       control=self.stage_control, only=members, on_record=self._on_record,
                                       before_unit=before)
            tg.cancel_scope.cancel()
        self.journal.lock()  # apply_plan released it; the rollout holds it until it ends
        if summary.state is RunState.STOPPED:
            return summary  # a fatal error (token refused, Retry-After too long): journaled by the engine
        if self.tripped is not None:
            return await self._abort(stage, self.tripped)
        if (halt := self._halted()) is not None:
            return self._finish(*halt)
        if self.control.stop_requested.is_set():
            return self._interrupted(stage)
        self.store.stage_written(stage, self.clock.now())
        return None

    async def _gate(self, stage: int) -> RunSummary | None:
        record = self.store.stage(stage)
        subjects = [i for i, j in zip(self.members[stage], self._outcomes(stage), strict=True)
                    if j in (Outcome.APPLIED, Outcome.NOOP)]
        assert record.gate_started_at is not None
        deadline = parse_stamp(record.gate_started_at) + timedelta(seconds=self.rollout.gate_timeout)
        if gate.gate_kind(self.plan) == "none" or not subjects:
            detail = "no gate" if subjects else "nothing was applied in this stage"
            self.store.decide(stage, Verdict.PASS, self.clock.now(), passed=len(subjects), failed=0,
                              pending=0, detail=detail)
            return None
        while True:
            halt = await self._switch(stage)
            if halt is not None:
                return self._finish(*halt)
            try:
                result = await gate.poll(self.client, self.plan, subjects)
            except FATAL:
                raise
            except RemoteError as exc:
                self.store.decide(stage, Verdict.INCONCLUSIVE, self.clock.now(), passed=0, failed=0,
                                  pending=len(subjects), detail=str(exc))
                self._show(stage, "paused", pending=len(subjects))
                return self._finish(RunState.PAUSED,
                                    f"paused: gate inconclusive at {self._where(stage)} ({exc}); "
                                    f"`bulkops resume {self.journal.run_id}` polls it again")
            self.store.polled(stage)
            now = self.clock.now()
            passed, failing = len(result.passed), len(result.failing)
            self._show(stage, Phase.GATING.value, passed=passed, pending=failing)
            if not failing:
                self.store.decide(stage, Verdict.PASS, now, passed=passed, failed=0, pending=0)
                self.notify(f"{self._where(stage)}: gate passed ({passed} of {len(subjects)})")
                return None
            if now >= deadline:
                self.store.decide(stage, Verdict.FAIL, now, passed=passed, failed=failing, pending=0,
                                  detail=f"{failing} did not pass within {self.rollout.gate_timeout:g}s",
                                  failures=dict(result.failing))
                self.tally.failures += failing
                self.notify(f"{self._where(stage)}: gate failed: {failing} of {len(subjects)} did not pass; "
                            f"failures {self.tally.failures}, tolerated {self.tally.allowed()}")
                return None
            self.notify(f"{self._where(stage)}: gate pending: {passed} of {len(subjects)} pass, e.g. "
                        f"{self.plan.items[next(iter(result.failing))].label}: "
                        f"{next(iter(result.failing.values()))}")
            if not await self._sleep(min(self.rollout.poll_every, (deadline - now).total_seconds())):
                return self._interrupted(stage)

    def _outcomes(self, stage: int) -> list[Outcome | None]:
        wanted = set(self.members[stage])
        return [j.outcome for j in self.journal.items() if j.index in wanted]

    async def _abort(self, stage: int, rule: str) -> RunSummary:
        undo = self.rollout.on_abort is OnAbort.UNDO
        self.store.aborted(stage, f"aborted at {self._where(stage)}: {rule}", self.clock.now(), undo=undo)
        if undo:
            self.notify(f"aborted at {self._where(stage)}: {rule}; undoing what the rollout changed")
        self._show(stage, Phase.UNDOING.value if undo else Phase.ABORTED.value)
        if not undo:
            return self._finish(RunState.ABORTED, f"aborted at {self._where(stage)}: {rule}")
        return await self._undo()

    async def _undo(self) -> RunSummary:
        state = self.store.state()
        outcome, message = await undo_rollout(self.plan, self.client, self.journal, self.store,
                                              control=self.control, new_run=self.new_run, now=self.clock.now)
        if outcome is RunState.ABORTED:
            self.store.set_phase(state.stage, Phase.ABORTED, self.clock.now(), message)
        return self._finish(outcome, message)

    # --- the loop --------------------------------------------------------------------------------

    def _next(self, stage: int) -> int | None:
        return next((s for s in self.order if s > stage), None)

    async def run(self, resumed_state: RunState) -> RunSummary:
        self.store.init({i: s for s, members in self.members.items() for i in members}, self.clock.now())
        self.tally.attempted, self.tally.failures = self.store.tally()
        if not self.order:
            self.store.set_phase(0, Phase.DONE, self.clock.now())
        self.journal.set_state(RunState.RUNNING)
        while True:
            state = self.store.state()
            stage = state.stage
            if state.phase is Phase.DONE:
                return self._finish(RunState.DONE, self._done_message())
            if state.phase is Phase.ABORTED:
                return self._finish(RunState.ABORTED, state.message)
            if state.phase is Phase.UNDOING:
                return await self._undo()
            if state.phase is Phase.APPROVAL:
                if state.approved < stage:
                    return self._awaiting(stage)
                self.store.set_phase(self._next(stage) or stage, Phase.WRITING, self.clock.now())
                continue
            if (rule := self.tally.crossed()) is not None:
                return await self._abort(stage, rule)
            if state.phase is Phase.WRITING:
                done = await self._write(stage)
                if done is not None:
                    return done
                continue
            if state.phase is Phase.WAITING:
                record = self.store.stage(stage)
                assert record.written_at is not None
                left = (parse_stamp(record.written_at) + timedelta(seconds=self.rollout.wait)
                        - self.clock.now()).total_seconds()
                if left > 0:
                    self.notify(f"{self._where(stage)}: waiting {left:.0f}s before the gate")
                    self._show(stage, Phase.WAITING.value)
                if not await self._sleep(left):
                    return self._interrupted(stage)
                self.store.gate_started(stage, self.clock.now())
                continue
            record = self.store.stage(stage)  # GATING
            if record.verdict is None:
                if resumed_state is RunState.PAUSED:
                    self.store.gate_started(stage, self.clock.now())  # a new window after a pause
                    resumed_state = RunState.RUNNING
                done = await self._gate(stage)
                if done is not None:
                    return done
            if (rule := self.tally.crossed()) is not None:
                return await self._abort(stage, rule)
            following = self._next(stage)
            if following is None:
                self.store.set_phase(stage, Phase.DONE, self.clock.now())
                continue
            if self.rollout.approve is Approve.MANUAL and state.approved < stage:
                self.store.set_phase(stage, Phase.APPROVAL, self.clock.now())
                return self._awaiting(stage)
            self.store.set_phase(following, Phase.WRITING, self.clock.now())

    def _awaiting(self, stage: int) -> RunSummary:
        self._show(stage, Phase.APPROVAL.value)
        message = (f"awaiting approval: {self._where(stage)} passed its gate; `bulkops approve "
                   f"{self.journal.run_id}` starts stage {self._next(stage)}")
        return self._finish(RunState.AWAITING_APPROVAL, message)

    def _done_message(self) -> str:
        failed = len(self.store.gate_failures())
        return f"rollout done: {self.count} stages" + (
            f"; {failed} targets failed their gate (tolerated by the abort rule)" if failed else "")


async def apply_rollout(
    plan: Plan, client: Client, journal: Journal, *, new_run: Callable[[Plan], Journal],
    on_progress: ProgressCallback | None = None, on_rollout: RolloutCallback | None = None,
    control: RunControl | None = None, clock: Clock | None = None,
    notify: Callable[[str], None] | None = None,
) -> RunSummary:
    """Apply a rollout plan stage by stage into ``journal`` (new or resumed); ``new_run`` makes the run of
    the undo when ``on_abort = "undo"``."""
    if plan.rollout is None:
        raise ValueError("apply_rollout needs a plan with a rollout")
    resumed = journal.state()
    journal.lock()
    store = GateStore.open(journal.path)
    loop = _Rollout(plan, client, journal, store, control=control or RunControl(),
                    clock=clock or SystemClock(), on_progress=on_progress, on_rollout=on_rollout,
                    notify=notify or (lambda _msg: None), new_run=new_run)
    try:
        return await loop.run(resumed)
    except (AuthError, RetryAfterTooLongError) as exc:  # the run cannot go on: journaled as stopped
        log.warning("bulkops.rollout.stopped", reason=str(exc))
        return loop.stopped(str(exc))
    finally:
        store.close()
        journal.unlock()
