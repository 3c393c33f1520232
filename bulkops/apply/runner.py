"""The pieces around the engine that the CLI and library callers share: making the client for a
plan's options, watching SIGINT/SIGTERM, and running a plan in a new or an existing run directory."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import structlog

from bulkops.api.client import Client
from bulkops.api.limiter import AdaptiveLimiter
from bulkops.apply.engine import RunControl, apply_plan
from bulkops.apply.rollout import RolloutCallback, apply_rollout
from bulkops.errors import AuthError, GuardError, RemoteError
from bulkops.journal.journal import Journal
from bulkops.journal.plans import PlanClaim
from bulkops.journal.runs import PLAN_FILE, new_id, start_run
from bulkops.model import ApplyOptions, Plan, Progress, RunSummary
from bulkops.plan.file import plan_chunks, read_plan
from bulkops.plan.seal import plan_digest

log = structlog.get_logger("bulkops.apply")


@asynccontextmanager
async def open_client(
    api_url: str, token: str, options: ApplyOptions, *, allow_insecure_http: bool = False,
    limiter: AdaptiveLimiter | None = None,
) -> AsyncIterator[Client]:
    """A client configured from a job's or plan's options, with its own adaptive limiter."""
    lim = limiter or AdaptiveLimiter(max_concurrency=options.max_concurrency)
    async with Client(
        api_url, token, limiter=lim, timeout=options.request_timeout, max_attempts=options.max_attempts,
        max_retry_time=options.max_retry_time, max_retry_after=options.max_retry_after,
        allow_insecure_http=allow_insecure_http,
    ) as client:
        yield client


async def _watch_signals(control: RunControl, notify: Callable[[str], None]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        count = 0
        async for _ in signals:
            count += 1
            if count == 1:
                notify("stopping: no new requests; waiting for those in flight "
                       "(Ctrl-C again to stop at once)")
                control.stop()
            else:
                control.abort()


async def run_plan(
    plan: Plan, client: Client, journal: Journal, *, on_progress: Callable[[Progress], None] | None = None,
    control: RunControl | None = None, handle_signals: bool = True,
    notify: Callable[[str], None] | None = None, on_rollout: RolloutCallback | None = None,
    exiting: bool = False,
) -> RunSummary:
    """``apply_plan`` with SIGINT/SIGTERM turned into a clean stop (second signal: stop at once); a
    rollout plan goes through ``apply_rollout``, stage by stage, its steps told through ``notify``. Every
    log event inside the run carries ``run_id`` and ``job`` (structlog context variables). ``exiting``:
    the caller is a process that ends with this run (the CLI); once a signal stopped the run, further
    SIGINT/SIGTERM are ignored, so one arriving after the watcher closed cannot cut the summary short."""
    control = control or RunControl()
    say = notify or (lambda msg: print(f"\nbulkops: {msg}", file=sys.stderr))
    with structlog.contextvars.bound_contextvars(run_id=journal.run_id, job=plan.job_name):
        async with anyio.create_task_group() as tg:
            if handle_signals:
                tg.start_soon(_watch_signals, control, say)
            if plan.rollout is not None:
                summary = await apply_rollout(
                    plan, client, journal, new_run=new_run, on_progress=on_progress, on_rollout=on_rollout,
                    control=control, notify=notify or (lambda msg: print(f"bulkops: {msg}", file=sys.stderr)))
            else:
                summary = await apply_plan(plan, client, journal, on_progress=on_progress, control=control)
            tg.cancel_scope.cancel()
    if exiting and handle_signals and control.stop_requested.is_set():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    return summary


def new_run(plan: Plan, *, claim: PlanClaim | None = None) -> Journal:
    """A fresh run directory holding the plan and a journal with every item, which records the plan's
    digest. A plan has one run: :class:`GuardError` when it has one already, or while another process
    holds its lock (``claim``: the lock, already taken by the caller)."""
    if not plan.plan_id:  # a plan put together by hand, not made by make_plan: nothing to key it on
        return _create(plan, new_id())
    held = claim or PlanClaim.take(plan.plan_id)
    try:
        held.refuse_if_applied()
        run_id = held.recorded() or new_id()  # a recorded run without a journal: killed before it existed
        held.record(run_id)
        return _create(plan, run_id)
    finally:
        if claim is None:
            held.release()


def _create(plan: Plan, run_id: str) -> Journal:
    directory = start_run(plan_chunks(plan), run_id=run_id)
    return Journal.create(directory, plan, plan_path=directory / PLAN_FILE, plan_digest=plan_digest(plan))


def load_run(directory: Path) -> tuple[Plan, Journal]:
    """The plan and journal of an existing run directory; :class:`GuardError` when the run's copy of the
    plan is not the plan the run was created from."""
    plan, journal = read_plan(directory / PLAN_FILE), Journal.open(directory)
    recorded = journal.plan_digest()
    if recorded != plan_digest(plan):
        journal.close()
        if recorded is None:
            raise GuardError(f"run {directory.name} does not record the digest of its plan (it was created "
                             "by an older bulkops), so its plan cannot be checked; make a new plan")
        raise GuardError(f"the plan of run {directory.name} is not the plan the run was created from "
                         f"({directory / PLAN_FILE} was changed); make a new plan")
    return plan, journal


async def verify_token(client: Client, plan: Plan) -> None:
    """One cheap GET (one id of the plan's resource) before the first write: a token the API refuses
    stops here, having changed nothing, instead of costing a refused write per worker. Any other failure
    of that GET (an outage, a 5xx) says nothing about the token: the run goes on and meets it as before."""
    try:
        await client.get(plan.target_resource, select=("id",), top=1)
    except AuthError as exc:
        raise AuthError(f"{exc.detail} (checked before the first write: nothing was changed)",
                        method=exc.method, url=exc.url, status=exc.status) from None
    except RemoteError as exc:
        log.warning("bulkops.apply.token_check_inconclusive", status=exc.status, error=str(exc))
