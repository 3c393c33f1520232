"""One slot of one job, unattended: plan → guards → apply, every outcome recorded in the slot store.

The caller has claimed the slot (state ``queued``). :meth:`SlotRunner.run` takes the job lock (a job
still running its previous slot makes this one a skip: overlap), waits for the scope locks of jobs
whose targets may overlap, plans, checks the unattended guards and ``check_apply``, reads the fleets of
the plan's rows from the server (the allowlist), and applies the plan in a new run. Every ending,
failure included, becomes the slot's state; nothing escapes to stop the scheduler except cancellation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from bulkops.api.limiter import AdaptiveLimiter
from bulkops.apply.engine import RunControl
from bulkops.apply.runner import new_run, open_client, run_plan
from bulkops.errors import BulkopsError, GuardError
from bulkops.model import GrowLimit, Job, Outcome, Plan, RunState, RunSummary
from bulkops.plan.allowlist import check_plan_fleets
from bulkops.plan.guards import check_apply
from bulkops.plan.make import make_plan
from bulkops.schedule.clock import Clock
from bulkops.schedule.guards import NeedsApprovalError, active, check_unattended
from bulkops.schedule.locks import JobBusyError, StoppedWaitingError, hold_scopes, job_lock, scopes
from bulkops.schedule.slots import SkipReason, slot_key
from bulkops.schedule.store import SlotState, SlotStore

if TYPE_CHECKING:
    from bulkops.api.client import Client

log = structlog.get_logger("bulkops.schedule")


@dataclass(frozen=True, slots=True, repr=False)
class Api:
    """Where the runs go: API root, token (never shown), and whether plain http off loopback is allowed."""

    api_url: str
    token: str
    allow_insecure_http: bool = False

    def __repr__(self) -> str:
        return f"Api(api_url={self.api_url!r}, token='***')"


class Limiters:
    """One adaptive limiter per (API URL, token): every job on the same API and token shares it, so
    together they converge on the rate the server admits instead of each learning it alone."""

    def __init__(self, max_concurrency: int = 16) -> None:
        self._max = max_concurrency
        self._by_key: dict[tuple[str, str], AdaptiveLimiter] = {}

    def get(self, api: Api) -> AdaptiveLimiter:
        key = (api.api_url.rstrip("/"), hashlib.sha256(api.token.encode()).hexdigest())
        if key not in self._by_key:
            self._by_key[key] = AdaptiveLimiter(max_concurrency=self._max)
        return self._by_key[key]

    def __len__(self) -> int:
        return len(self._by_key)


@dataclass(frozen=True, slots=True)
class SlotResult:
    job: str
    slot: datetime
    state: SlotState
    detail: str = ""
    run_id: str = ""
    reason: str = ""  # the skip reason, for a skipped slot
    requests: int = 0
    throttled: int = 0
    plan: Plan | None = None
    summary: RunSummary | None = None


def event(state: SlotState, job: str, slot: datetime, **fields: Any) -> None:
    """``bulkops.schedule.slot.<state>`` with job, slot and run_id always present."""
    fields.setdefault("run_id", "")
    warn = state in {SlotState.FAILED, SlotState.REFUSED, SlotState.NEEDS_APPROVAL, SlotState.STOPPED}
    (log.warning if warn else log.info)(f"bulkops.schedule.slot.{state.value}", job=job, slot=slot_key(slot),
                                        **fields)


class SlotRunner:
    def __init__(self, api: Api, store: SlotStore, clock: Clock, limiters: Limiters | None = None, *,
                 base: Path | None = None, on_plan: Callable[[Plan], None] | None = None) -> None:
        self.api, self.store, self.clock = api, store, clock
        self.limiters = limiters or Limiters()
        self.base = base
        self.on_plan = on_plan

    def _end(self, job: str, slot: datetime, state: SlotState, detail: str = "", *, reason: str = "",
             plan: Plan | None = None, client: Client | None = None,
             summary: RunSummary | None = None) -> SlotResult:
        stats = client.statistics() if client is not None else None
        requests, throttled = (stats.requests, stats.throttled) if stats is not None else (0, 0)
        run_id = summary.run_id if summary is not None else ""
        self.store.finish(job, slot, state, self.clock.now(), reason=reason, detail=detail, run_id=run_id,
                          planned=len(plan.items) if plan else None, active=active(plan) if plan else None,
                          requests=requests, throttled=throttled,
                          counts=dict(summary.counts) if summary is not None else None)
        extra: dict[str, Any] = {"reason": reason} if reason else {}
        if client is not None:
            extra.update(requests=requests, throttled=throttled)
        if summary is not None:
            extra.update({k: v for k, v in summary.counts.items() if v})
        event(state, job, slot, run_id=run_id, detail=detail, **extra)
        return SlotResult(job, slot, state, detail, run_id, reason, requests, throttled, plan, summary)

    async def run(self, job: Job, slot: datetime, *, control: RunControl, approve: bool = False,
                  approve_hint: str = "") -> SlotResult:
        try:
            with structlog.contextvars.bound_contextvars(job=job.name, slot=slot_key(slot), run_id=""), \
                    job_lock(job.name, self.base):
                def waiting() -> None:
                    log.info("bulkops.schedule.slot.waiting", job=job.name, slot=slot_key(slot), run_id="",
                             detail="another job whose targets may overlap is running")

                async with hold_scopes(scopes(job, self.api.api_url), self.base, on_wait=waiting,
                                       stop=control.stop_requested):
                    return await self._run(job, slot, control, approve, approve_hint)
        except StoppedWaitingError:
            return self._end(job.name, slot, SlotState.SKIPPED, "the scheduler stopped before this slot "
                             "started", reason=SkipReason.STOPPED.value)
        except JobBusyError:
            running = self.store.running(job.name)
            detail = (f"the job is still running slot {running.slot} (run {running.run_id or 'planning'})"
                      if running else "another run of the job holds its lock")
            return self._end(job.name, slot, SlotState.SKIPPED, detail, reason=SkipReason.OVERLAP.value)

    async def _run(self, job: Job, slot: datetime, control: RunControl, approve: bool,
                   approve_hint: str) -> SlotResult:
        name = job.name
        self.store.start(name, slot, self.clock.now())
        grow = job.schedule.grow_limit if job.schedule is not None else GrowLimit()
        hint = approve_hint or f"bulkops run {job.path} --yes --unattended --slot {slot_key(slot)} --approve"
        api = self.api
        plan: Plan | None = None
        async with open_client(api.api_url, api.token, job.options, limiter=self.limiters.get(api),
                               allow_insecure_http=api.allow_insecure_http) as client:
            try:
                plan = await make_plan(job, client, api_url=api.api_url, now=self.clock.now())
                if self.on_plan is not None:
                    self.on_plan(plan)
                if not active(plan):
                    return self._end(name, slot, SlotState.NOTHING_TO_DO, "every target is as wanted already",
                                     plan=plan, client=client)
                check_unattended(plan, baseline=self.store.baseline(name), grow=grow, approve=approve,
                                 approve_hint=hint)
                check_apply(plan, api_url=api.api_url, now=self.clock.now())
                await check_plan_fleets(plan, client)
                if control.stop_requested.is_set():
                    return self._end(name, slot, SlotState.SKIPPED, "the scheduler stopped before this slot "
                                     "started", reason=SkipReason.STOPPED.value, plan=plan, client=client)
                journal = new_run(plan)
            except NeedsApprovalError as exc:
                return self._end(name, slot, SlotState.NEEDS_APPROVAL, str(exc), plan=plan, client=client)
            except GuardError as exc:
                return self._end(name, slot, SlotState.REFUSED, str(exc), plan=plan, client=client)
            except BulkopsError as exc:
                return self._end(name, slot, SlotState.FAILED, str(exc), plan=plan, client=client)
            self.store.set_run(name, slot, journal.run_id, len(plan.items), active(plan))
            structlog.contextvars.bind_contextvars(run_id=journal.run_id)
            log.info("bulkops.schedule.slot.started", job=name, slot=slot_key(slot), run_id=journal.run_id,
                     planned=len(plan.items), active=active(plan))
            try:
                summary = await run_plan(plan, client, journal, control=control, handle_signals=False)
            finally:
                journal.close()
            return self._end(name, slot, _state(summary), _detail(summary), plan=plan, client=client,
                             summary=summary)


def _state(summary: RunSummary) -> SlotState:
    if summary.state is RunState.INTERRUPTED:
        return SlotState.INTERRUPTED
    if summary.state is RunState.STOPPED:
        return SlotState.STOPPED
    bad = summary.counts.get(Outcome.FAILED.value, 0) + summary.counts.get(Outcome.DRIFTED.value, 0)
    return SlotState.SOME_FAILED if bad else SlotState.DONE


def _detail(summary: RunSummary) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items() if v)
    if summary.state in {RunState.INTERRUPTED, RunState.STOPPED}:
        why = summary.message or summary.state.value
        return f"{why}; continue with `bulkops resume {summary.run_id}` ({counts})"
    return counts
