"""``bulkops schedule DIR``: the loop around the pipeline.

Each *tick* re-reads the job directory, and for every valid job with a schedule decides — inside one
store transaction, so two schedulers sharing ``BULKOPS_HOME`` never decide a slot twice — which of the
slots due since the job's cursor run and which are skipped (each skip journaled with its reason), then
claims the ones to run and starts one task per job that runs them oldest first. Ticks never wait for
runs: a long run does not delay another job.

Time comes only from the injected :class:`~bulkops.schedule.clock.Clock`: a test calls
:meth:`Scheduler.run_due` after moving a :class:`~bulkops.schedule.clock.ManualClock`, with no sleeps.

A job seen for the first time starts with its cursor :data:`ON_TIME` (or its jitter, if longer) before
now: slots before it predate the job and are neither run nor counted as missed.
"""

from __future__ import annotations

import signal
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskGroup

from bulkops.apply.engine import RunControl
from bulkops.errors import BulkopsError
from bulkops.job.schedule import ON_TIME
from bulkops.model import Job
from bulkops.schedule.clock import Clock, SystemClock
from bulkops.schedule.health import Metrics
from bulkops.schedule.jobs import JobDir
from bulkops.schedule.run import Api, Limiters, SlotResult, SlotRunner, event
from bulkops.schedule.slots import Skip, SkipReason, decide, due_at, iter_slots, slot_key
from bulkops.schedule.store import SlotState, SlotStore, new_owner

log = structlog.get_logger("bulkops.schedule")
RELOAD_EVERY = timedelta(seconds=15)  # the longest a tick waits: job files are re-read at least this often


def decide_and_claim(store: SlotStore, job: Job, now: datetime, owner: str, *, jitter: bool = True,
                     first_cursor: datetime | None = None, metrics: Metrics | None = None,
                     ) -> tuple[list[datetime], list[Skip]]:
    """In one store transaction: the job's due slots decided by its policy, the skipped ones journaled,
    the ones to run claimed for ``owner``, the cursor moved past them. Returns the claimed slots and the
    skips this call journaled. A job never seen
    before starts at ``first_cursor`` (default: :data:`ON_TIME` or the jitter, if longer, before now)."""
    sched = job.schedule
    assert sched is not None
    claimed: list[datetime] = []
    skipped: list[Skip] = []
    with store.locked():
        cursor = store.cursor(job.name)
        if cursor is None:
            cursor = first_cursor or now - max(sched.jitter, ON_TIME)
            store.set_cursor(job.name, cursor, now)
        decision = decide(job.name, sched, cursor, now, jitter=jitter)
        for skip in decision.skip:
            if store.record_skip(job.name, skip, now):
                skipped.append(skip)
                if metrics is not None:
                    metrics.skip(job.name, skip.reason.value)
                event(SlotState.SKIPPED, job.name, skip.slot, reason=skip.reason.value, detail=skip.detail)
        for slot in decision.run:
            if store.claim(job.name, slot, owner, now):
                claimed.append(slot)
            else:
                log.info("bulkops.schedule.slot.taken", job=job.name, slot=slot_key(slot), run_id="",
                         detail="another process decided this slot")
        if decision.cursor is not None:
            store.set_cursor(job.name, decision.cursor, now)
    return claimed, skipped


class Scheduler:
    def __init__(self, directory: Path, api: Api, *, clock: Clock | None = None,
                 store: SlotStore | None = None, base: Path | None = None, limiters: Limiters | None = None,
                 metrics: Metrics | None = None, owner: str | None = None) -> None:
        self.clock = clock or SystemClock()
        self.jobs = JobDir(directory)
        self.store = store or SlotStore.open(base)
        self.metrics = metrics or Metrics()
        self.runner = SlotRunner(api, self.store, self.clock, limiters, base=base)
        self.owner = owner or new_owner()
        self.controls: dict[tuple[str, datetime], RunControl] = {}
        self.results: list[SlotResult] = []
        self.stopping = False
        self._stop = anyio.Event()

    # --- deciding --------------------------------------------------------------------------------

    def decide(self, now: datetime) -> list[tuple[Job, list[datetime]]]:
        """Re-read the job files; journal the skipped slots and claim the ones to run, per job."""
        self.jobs.scan()
        jobs = self.jobs.scheduled()
        self.metrics.tick(now, valid=len(jobs), invalid=len(self.jobs.invalid()))
        out = []
        for name in sorted(jobs):
            try:
                slots, _ = decide_and_claim(self.store, jobs[name], now, self.owner, metrics=self.metrics)
            except BulkopsError as exc:  # the store could not be written: this job waits for the next tick
                log.error("bulkops.schedule.job.error", job=name, error=str(exc))  # noqa: TRY400 - the message says it all
                continue
            if slots:
                out.append((jobs[name], slots))
        return out

    # --- running ---------------------------------------------------------------------------------

    async def _run_job(self, job: Job, slots: list[datetime]) -> None:
        for slot in slots:
            if self.stopping:
                self.store.finish(job.name, slot, SlotState.SKIPPED, self.clock.now(),
                                  reason=SkipReason.STOPPED.value,
                                  detail="the scheduler stopped before this slot started")
                self.metrics.skip(job.name, SkipReason.STOPPED.value)
                event(SlotState.SKIPPED, job.name, slot, reason=SkipReason.STOPPED.value,
                      detail="the scheduler stopped before this slot started")
                continue
            control = RunControl()
            self.controls[(job.name, slot)] = control
            try:
                result = await self.runner.run(job, slot, control=control)
            except Exception as exc:  # one job's failure, even a bug, never stops the scheduler
                detail = f"unexpected error: {type(exc).__name__}: {exc}"
                log.exception("bulkops.schedule.slot.crashed", job=job.name, slot=slot_key(slot))
                self.store.finish(job.name, slot, SlotState.FAILED, self.clock.now(), detail=detail)
                event(SlotState.FAILED, job.name, slot, detail=detail)
                result = SlotResult(job.name, slot, SlotState.FAILED, detail)
            finally:
                del self.controls[(job.name, slot)]
            if result.state is SlotState.SKIPPED:
                self.metrics.skip(job.name, result.reason)
            self.metrics.observe(result)
            self.results.append(result)

    async def tick(self, tg: TaskGroup) -> list[tuple[Job, list[datetime]]]:
        """Decide what is due now and start its runs in ``tg``; returns what was started."""
        started = [] if self.stopping else self.decide(self.clock.now())
        for job, slots in started:
            tg.start_soon(self._run_job, job, slots, name=f"bulkops.schedule:{job.name}")
        return started

    async def run_due(self) -> list[SlotResult]:
        """One tick, waiting for the runs it started; their results, in the order they ended."""
        before = len(self.results)
        async with anyio.create_task_group() as tg:
            await self.tick(tg)
        return self.results[before:]

    def stop(self, *, abort: bool = False) -> None:
        """Start no new slot; stop the runs in progress like apply does (``abort``: at once)."""
        self.stopping = True
        self._stop.set()
        for control in list(self.controls.values()):
            if abort:
                control.abort()
            else:
                control.stop()

    # --- the loop --------------------------------------------------------------------------------

    def next_wakeup(self, now: datetime) -> datetime:
        """The earliest due time of any job's next slot, but no later than :data:`RELOAD_EVERY`."""
        wake = now + RELOAD_EVERY
        for name, job in self.jobs.scheduled().items():
            assert job.schedule is not None
            after = max(self.store.cursor(name) or now, now - job.schedule.catch_up)
            for slot in iter_slots(job.schedule, after):
                wake = min(wake, max(now, due_at(name, job.schedule, slot)))
                break
        return wake

    async def _sleep_until(self, when: datetime) -> None:
        async with anyio.create_task_group() as tg:
            async def sleep() -> None:
                await self.clock.sleep_until(when)
                tg.cancel_scope.cancel()

            async def stopped() -> None:
                await self._stop.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(sleep)
            tg.start_soon(stopped)

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            count = 0
            async for signum in signals:
                count += 1
                log.warning("bulkops.schedule.stopping", signal=signal.Signals(signum).name,
                            running=len(self.controls), at_once=count > 1)
                self.stop(abort=count > 1)

    async def serve(self, *, once: bool = False, handle_signals: bool = True) -> list[SlotResult]:
        """Tick until stopped (SIGINT/SIGTERM when ``handle_signals``); with ``once``, a single tick.
        Runs in progress at a stop end as interrupted, resumable with ``bulkops resume``."""
        async with anyio.create_task_group() as outer:
            if handle_signals:
                outer.start_soon(self._watch_signals)
            async with anyio.create_task_group() as runs:
                while not self.stopping:
                    await self.tick(runs)
                    if once:
                        break
                    await self._sleep_until(self.next_wakeup(self.clock.now()))
            outer.cancel_scope.cancel()
        return self.results
