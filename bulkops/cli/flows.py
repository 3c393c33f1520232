"""The steps the commands share: a client that the interrupt handler knows about, a plan with the
context its preview needs, where the preview goes, the confirmation text, the run summary document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from bulkops.apply.runner import open_client
from bulkops.cli import output, session
from bulkops.errors import InputError
from bulkops.model import ApplyOptions, ChangeKind, Job, Plan, RunState, RunSummary
from bulkops.plan.context import PlanContext, read_context
from bulkops.plan.guards import noun
from bulkops.plan.make import make_plan
from bulkops.plan.preview import describe_action, preview_json, preview_text, to_json_bytes

__all__ = ["cli_client", "confirm_head", "context_of", "plan_with_context", "preview_json",
           "show_preview", "stdout_users", "summary_json", "to_json_bytes"]

if TYPE_CHECKING:
    from bulkops.api.client import Client
    from bulkops.api.limiter import AdaptiveLimiter
    from bulkops.cli.commands import Endpoint
    from bulkops.journal.journal import Journal


@asynccontextmanager
async def cli_client(ep: Endpoint, options: ApplyOptions, *, limiter: AdaptiveLimiter | None = None
                     ) -> AsyncIterator[Client]:
    """``open_client`` for the endpoint, counted in :mod:`bulkops.cli.session` (Ctrl-C's exit code)."""
    async with open_client(ep.api_url, ep.token, options, allow_insecure_http=ep.allow_insecure_http,
                           limiter=limiter) as client:
        session.add_client(client)
        yield client


async def plan_with_context(job: Job, ep: Endpoint, *, every_row: bool) -> tuple[Plan, PlanContext]:
    async with cli_client(ep, job.options) as client:
        plan = await make_plan(job, client, api_url=ep.api_url)
        return plan, await read_context(plan, client, job=job, every_row=every_row)


async def context_of(plan: Plan, ep: Endpoint, *, every_row: bool = False) -> PlanContext:
    async with cli_client(ep, plan.options) as client:
        return await read_context(plan, client, every_row=every_row)


def stdout_users(args: Any) -> list[str]:
    """The options that want stdout; more than one is refused."""
    used = [name for name, on in (("--json", getattr(args, "json", False) is True),
                                  ("-o -", getattr(args, "output", None) == output.STDOUT),
                                  ("--csv -", getattr(args, "csv", None) == output.STDOUT)) if on]
    if len(used) > 1:
        raise InputError(f"only one of {', '.join(used)} can write to stdout: give a file name to the others")
    return used


def show_preview(plan: Plan, notes: tuple[str, ...], ctx: PlanContext | None, *, as_json: bool,
                 stdout_taken: bool = False) -> None:
    """The preview on stdout — or, when stdout carries a plan file or CSV, on stderr (human text on a
    terminal, a ``bulkops.plan.preview`` event otherwise)."""
    if as_json:
        output.out(to_json_bytes(preview_json(plan, notes, ctx)).decode())
    elif not stdout_taken:
        output.out(preview_text(plan, notes, ctx))
    elif output.terminal():
        output.stderr_text(preview_text(plan, notes, ctx))
    else:
        output.event("bulkops.plan.preview", preview=preview_json(plan, notes, ctx))


def confirm_head(plan: Plan) -> str:
    """``job X: set_env LOG_LEVEL=info on 523 of 581 devices in acme/sensor (change 187 · create 336)``"""
    counts = plan.counts()
    active = len(plan.items) - counts["noop"]
    kinds = " · ".join(f"{k.value} {counts[k.value]:,}" for k in ChangeKind if k is not ChangeKind.NOOP
                       and counts[k.value])
    sources = [f for f in plan.fleets if f != plan.action.to_fleet]
    where = f" in {', '.join(sources)}" if sources else ""
    if plan.action.to_fleet:
        where += f" → {plan.action.to_fleet}"
    undo = f"undo of run {plan.undo_of}: " if plan.undo_of else ""
    return (f"job {plan.job_name}: {undo}{describe_action(plan.action)} on {active:,} of "
            f"{noun(plan.target_resource, len(plan.items))}{where} ({kinds})")


def summary_json(journal: Journal, summary: RunSummary, *, plan_requests: int, code: int) -> dict[str, Any]:
    info = journal.info()
    resume = summary.state in {RunState.INTERRUPTED, RunState.STOPPED}
    return {
        "run_id": info.run_id, "state": info.state, "job": info.job_name, "action": info.action,
        "total": info.total, "counts": info.counts, "message": journal.message() or None,
        "requests": {"plan": plan_requests, "apply": summary.requests, "throttled": summary.throttled},
        "elapsed_s": round(summary.elapsed, 3), "exit_code": code,
        "resume": f"bulkops resume {info.run_id}" if resume else None,
        "writes_journaled": journal.attempt_count(),
    }

