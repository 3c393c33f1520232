"""The pieces around the engine that the CLI and library callers share: making the client for a
plan's options, watching SIGINT/SIGTERM, showing progress on a terminal, and running a plan in a new
or an existing run directory."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TextIO

import anyio

from bulkops.apply import RunControl, apply_plan
from bulkops.client import Client
from bulkops.journal import Journal
from bulkops.limiter import AdaptiveLimiter
from bulkops.model import ApplyOptions, Plan, Progress, RunSummary
from bulkops.planfile import plan_chunks, read_plan
from bulkops.runs import PLAN_FILE, start_run


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


class ProgressLine:
    """``done/total, req/s, concurrency, 429s, ETA`` on one terminal line (stderr), at most 5 per second."""

    def __init__(self, limiter: AdaptiveLimiter | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.limiter = limiter
        self._last = 0.0
        self.enabled = self.stream.isatty()

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.2 and p.done < p.total):
            return
        self._last = now
        rate = p.requests / p.elapsed if p.elapsed > 0 else 0.0
        conc = self.limiter.statistics().concurrency if self.limiter is not None else 0
        per_item = p.elapsed / p.done if p.done else 0.0
        eta = per_item * (p.total - p.done)
        self.stream.write(
            f"\r  {p.done}/{p.total} done   {rate:.1f} req/s   concurrency {conc}   429s {p.throttled}"
            f"   ETA {eta:.0f}s   "
        )
        if p.done >= p.total:
            self.stream.write("\n")
        self.stream.flush()


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
    notify: Callable[[str], None] | None = None,
) -> RunSummary:
    """``apply_plan`` with SIGINT/SIGTERM turned into a clean stop (second signal: stop at once)."""
    control = control or RunControl()
    say = notify or (lambda msg: print(f"\nbulkops: {msg}", file=sys.stderr))
    async with anyio.create_task_group() as tg:
        if handle_signals:
            tg.start_soon(_watch_signals, control, say)
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
