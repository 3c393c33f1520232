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
from bulkops.journal.journal import Journal
from bulkops.journal.runs import PLAN_FILE, start_run
from bulkops.model import ApplyOptions, Plan, Progress, RunSummary
from bulkops.plan.file import plan_chunks, read_plan


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
) -> RunSummary:
    """``apply_plan`` with SIGINT/SIGTERM turned into a clean stop (second signal: stop at once); a
    rollout plan goes through ``apply_rollout``, stage by stage, its steps told through ``notify``. Every
    log event inside the run carries ``run_id`` and ``job`` (structlog context variables)."""
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
    return summary


def new_run(plan: Plan) -> Journal:
    """A fresh run directory holding the plan and a journal with every item."""
    directory = start_run(plan_chunks(plan), run_id=None)
    return Journal.create(directory, plan, plan_path=directory / PLAN_FILE)


def load_run(directory: Path) -> tuple[Plan, Journal]:
    """The plan and journal of an existing run directory."""
    return read_plan(directory / PLAN_FILE), Journal.open(directory)
