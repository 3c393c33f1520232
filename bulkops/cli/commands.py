"""The handlers behind each ``bulkops`` subcommand; each returns an exit code."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from bulkops.api.limiter import AdaptiveLimiter
from bulkops.apply.runner import load_run, new_run, run_plan, verify_token
from bulkops.cli import flows, output, session
from bulkops.cli import rollout as rollout_cli
from bulkops.cli.display import estimate_requests, progress_display, rollout_line
from bulkops.cli.prompt import ask
from bulkops.config import load_settings
from bulkops.errors import ExitCode, GuardError, InputError
from bulkops.job.load import LoadedJob, read_job
from bulkops.journal import report, runs
from bulkops.journal.journal import DONE, Journal, list_runs
from bulkops.journal.output import check_output
from bulkops.journal.plans import PlanClaim
from bulkops.journal.runs import PLAN_FILE
from bulkops.model import ChangeKind, Outcome, Plan, RunState, RunSummary
from bulkops.plan.allowlist import check_plan_fleets
from bulkops.plan.context import PlanContext
from bulkops.plan.export import csv_chunks
from bulkops.plan.file import plan_chunks, read_plan
from bulkops.plan.guards import check_apply
from bulkops.plan.retry import retry_plan
from bulkops.plan.seal import seal_plan
from bulkops.plan.undo import make_undo_plan


@dataclass(frozen=True, slots=True)
class Endpoint:
    api_url: str
    token: str
    allow_insecure_http: bool

    def __repr__(self) -> str:
        return f"Endpoint(api_url={self.api_url!r}, token=<redacted>)"


def endpoint(args: argparse.Namespace) -> Endpoint:
    settings = load_settings(api_url=args.api_url, allow_insecure_http=args.allow_insecure_http,
                             token_path=getattr(args, "token_file", None))
    return Endpoint(settings.api_url, settings.token, args.allow_insecure_http)


def exit_code(summary: RunSummary) -> ExitCode:
    if (staged := rollout_cli.exit_code(summary)) is not None:
        return staged
    if summary.state is RunState.INTERRUPTED:
        return ExitCode.INTERRUPTED
    if summary.state is RunState.STOPPED:
        return ExitCode.RUN_FAILED
    bad = summary.counts.get(Outcome.FAILED.value, 0) + summary.counts.get(Outcome.DRIFTED.value, 0)
    return ExitCode.SOME_FAILED if bad else ExitCode.OK


def confirm(plan: Plan, *, yes: bool, stdin_tty: bool | None = None) -> None:
    """Ask on a terminal; without one, ``--yes`` is required (and ``expect.max`` for deletions)."""
    counts = plan.counts()
    active = sum(n for kind, n in counts.items() if kind != ChangeKind.NOOP.value)
    if not active:
        return
    destructive = counts[ChangeKind.DELETE.value] > 0
    tty = sys.stdin.isatty() if stdin_tty is None else stdin_tty
    if yes:
        if destructive and not tty and plan.expect.max is None:
            raise GuardError(
                f"the plan deletes rows of {active} targets; without a terminal this needs expect.max "
                "in the job file"
            )
        return
    if not tty:
        raise GuardError(f"no terminal to confirm {active} changes: pass --yes to apply them without asking")
    head = flows.confirm_head(plan)
    if destructive and active > plan.options.confirm_threshold:
        answer = ask(f"{head}\nThis deletes rows of {active} targets. Type {active} to go on: ")
        if answer.strip() != str(active):
            raise GuardError("the typed count did not match: nothing was applied")
        return
    answer = ask(f"{head}\nApply these {active} changes? [y/N] ")
    if answer.strip().lower() not in {"y", "yes"}:
        raise GuardError("not confirmed: nothing was applied")


def run_async(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args)


def plan_output(args: argparse.Namespace, name: str) -> str:
    return str(args.output) if getattr(args, "output", None) else f"{name}.plan.json"


def _check_plan_output(args: argparse.Namespace) -> None:
    """A ``-o`` that cannot be written is refused before anything is read or sent."""
    if getattr(args, "output", None):
        check_output(args.output, "the plan")


_out = output.out


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = read_job(args.job)
    job = loaded.job
    _out(f"{args.job}: ok — {job.name}: {job.action.type.value} on {job.target.resource}")
    for note in loaded.notes:
        _out(f"note: {note}")
    return int(ExitCode.OK)


async def _retry(directory: Path, ep: Endpoint) -> Plan:
    plan, journal = load_run(directory)
    try:
        async with flows.cli_client(ep, plan.options) as client:
            return await retry_plan(plan, journal, client)
    finally:
        journal.close()


async def _undo(directory: Path, ep: Endpoint) -> Plan:
    plan, journal = load_run(directory)
    try:
        async with flows.cli_client(ep, plan.options) as client:
            return await make_undo_plan(plan, journal, client)
    finally:
        journal.close()


def _write_outputs(args: argparse.Namespace, plan: Plan, ctx: PlanContext, out: Path | str) -> None:
    """The plan file (or stdout for ``-o -``), the CSV of every target (``--csv FILE|-``)."""
    where = output.write_file(out, plan_chunks(plan))
    if getattr(args, "csv", None):
        csv_where = output.write_file(args.csv, csv_chunks(plan, ctx))
        output.note("bulkops.plan.csv_written", f"wrote every target to {csv_where}", path=csv_where,
                    targets=len(plan.items))
    if where != "stdout":
        output.note("bulkops.plan.written", f"plan written to {where} (apply it with `bulkops apply "
                    f"{where}`)", path=where, plan_id=plan.plan_id)


def _planned(args: argparse.Namespace, loaded: LoadedJob, ep: Endpoint) -> tuple[Plan, PlanContext]:
    every_row = bool(getattr(args, "csv", None))
    plan, ctx = run_async(partial(flows.plan_with_context, loaded.job, ep, every_row=every_row))
    return seal_plan(plan, ep.token), ctx


def _pending_exit(args: argparse.Namespace, plan: Plan) -> int:
    """``--detailed-exitcode``: 2 when the plan has changes to apply, 0 when it has none."""
    if getattr(args, "detailed_exitcode", False):
        return 2 if any(it.kind is not ChangeKind.NOOP for it in plan.items) else int(ExitCode.OK)
    return int(ExitCode.OK)


def cmd_undo(args: argparse.Namespace) -> int:
    directory = runs.run_dir(args.run)
    _check_plan_output(args)
    ep = endpoint(args)
    original = read_plan(directory / PLAN_FILE)
    if original.api_url.rstrip("/") != ep.api_url.rstrip("/"):
        raise GuardError(f"the run was made against {original.api_url}, not {ep.api_url}")
    taken = flows.stdout_users(args)
    plan = seal_plan(run_async(_undo, directory, ep), ep.token)
    ctx = run_async(partial(flows.context_of, plan, ep))
    out = args.output or f"{plan.job_name}.plan.json"
    flows.show_preview(plan, (), ctx, as_json=args.json, stdout_taken="-o -" in taken)
    where = output.write_file(out, plan_chunks(plan))
    if where != "stdout":
        output.note("bulkops.undo.written", f"undo plan written to {where} (apply it with `bulkops apply "
                    f"{where}`)", path=where, plan_id=plan.plan_id)
    return int(ExitCode.OK)


def cmd_plan(args: argparse.Namespace) -> int:
    taken = flows.stdout_users(args)
    if args.retry_failed:
        if args.job:
            raise InputError("give a job file or --retry-failed RUN, not both")
        directory = runs.run_dir(args.retry_failed)
        ep = endpoint(args)
        plan = seal_plan(run_async(_retry, directory, ep), ep.token)
        ctx = run_async(partial(flows.context_of, plan, ep, every_row=bool(args.csv)))
        flows.show_preview(plan, (), ctx, as_json=args.json, stdout_taken=bool(taken) and not args.json)
        _write_outputs(args, plan, ctx, args.output or f"{plan.job_name}.retry.plan.json")
        return _pending_exit(args, plan)
    if not args.job:
        raise InputError("give a job file (or --retry-failed RUN)")
    return plan_loaded(args, read_job(args.job))


def plan_loaded(args: argparse.Namespace, loaded: LoadedJob) -> int:
    """``plan`` of a job already read (a job file, or a one-liner's job built in memory)."""
    taken = flows.stdout_users(args)
    _check_plan_output(args)
    plan, ctx = _planned(args, loaded, endpoint(args))
    flows.show_preview(plan, loaded.notes, ctx, as_json=args.json, stdout_taken=bool(taken) and not args.json)
    _write_outputs(args, plan, ctx, args.output or plan_output(args, loaded.job.name))
    return _pending_exit(args, plan)


async def _apply(plan: Plan, ep: Endpoint, run_dir: Path | None,
                 claim: PlanClaim | None = None) -> RunSummary:
    """Check the token (one GET) and the allowlist on the server, then create or reopen the run and
    apply it. Nothing is written before both checks pass."""
    limiter = AdaptiveLimiter(max_concurrency=plan.options.max_concurrency)
    async with flows.cli_client(ep, plan.options, limiter=limiter) as client:
        if run_dir is None:
            if any(it.kind is not ChangeKind.NOOP for it in plan.items):
                await verify_token(client, plan)
            await check_plan_fleets(plan, client)
            journal = new_run(plan, claim=claim)
        else:
            plan, journal = load_run(run_dir)
            try:
                left = journal.left()
                if left:
                    await verify_token(client, plan)
                await check_plan_fleets(plan, client)
            except BaseException:
                journal.close()
                raise
            output.note("bulkops.run.resuming", f"resuming run {journal.run_id}: {left} items left",
                        run_id=journal.run_id, pending=left)
        try:
            session.started_run(journal.run_id)
            output.note("bulkops.run.started", f"run {journal.run_id}", run_id=journal.run_id)
            pending = (it for it, (_, state) in zip(plan.items, journal.iter_states(), strict=True)
                       if state != DONE)
            expected = estimate_requests(pending, plan.options.batch_size)
            async with progress_display(limiter, total=len(plan.items), expected_requests=expected,
                                        done=len(plan.items) - journal.left()) as (progress, notify):
                return await run_plan(plan, client, journal, on_progress=progress, notify=notify,
                                      exiting=True, on_rollout=lambda r: progress.set_status(rollout_line(r)))
        finally:
            journal.close()


def _finish(summary: RunSummary, *, as_json: bool = False, preview: dict[str, object] | None = None,
            plan_requests: int = 0) -> int:
    journal_dir = runs.run_dir(summary.run_id)
    journal = Journal.open(journal_dir)
    code = exit_code(summary)
    try:
        if as_json:
            doc = flows.summary_json(journal, summary, plan_requests=plan_requests, code=int(code))
            _out(flows.to_json_bytes({"plan": preview, "run": doc} if preview is not None
                                     else {"run": doc}).decode())
        else:
            _out(report.summary_text(journal))
    finally:
        journal.close()
    total = summary.requests + plan_requests
    split = f": {plan_requests} to plan, {summary.requests} to apply" if plan_requests else ""
    output.note("bulkops.run.requests", f"{total} requests sent ({summary.throttled} throttled) in "
                f"{session.elapsed():.2f}s{split}", requests=total, plan_requests=plan_requests,
                apply_requests=summary.requests, throttled=summary.throttled, run_id=summary.run_id)
    if summary.state in {RunState.INTERRUPTED, RunState.STOPPED}:
        if summary.message and summary.state is RunState.STOPPED:
            output.warn("bulkops.run.stopped", f"run stopped: {summary.message}", run_id=summary.run_id)
        output.note("bulkops.run.resume", f"continue with `bulkops resume {summary.run_id}`",
                    run_id=summary.run_id)
    rollout_cli.after_run(summary)
    return int(code)


def cmd_apply(args: argparse.Namespace) -> int:
    plan = read_plan(args.plan)
    ep = endpoint(args)
    check_apply(plan, api_url=ep.api_url, force=args.force, token=ep.token)
    with _claim(plan) as claim:
        confirm(plan, yes=args.yes)
        return _finish(run_async(_apply, plan, ep, None, claim), as_json=getattr(args, "json", False))


def _claim(plan: Plan) -> PlanClaim:
    """The plan's lock, held through the whole apply; refused if the plan already has a run."""
    claim = PlanClaim.take(plan.plan_id)
    try:
        claim.refuse_if_applied()
    except BaseException:
        claim.release()
        raise
    return claim


def cmd_run(args: argparse.Namespace) -> int:
    return run_loaded(args, read_job(args.job))


def run_loaded(args: argparse.Namespace, loaded: LoadedJob) -> int:
    """``run`` of a job already read (a job file, or a one-liner's job built in memory)."""
    ep = endpoint(args)
    plan, ctx = _planned(args, loaded, ep)
    planning = session.requests_sent()
    if not args.json:
        flows.show_preview(plan, loaded.notes, ctx, as_json=False)
    preview = flows.preview_json(plan, loaded.notes, ctx) if args.json else None
    if all(it.kind is ChangeKind.NOOP for it in plan.items):
        if args.json:
            _out(flows.to_json_bytes({"plan": preview, "run": None}).decode())
        output.note("bulkops.run.nothing", "nothing to apply; no run was started", plan_requests=planning)
        return int(ExitCode.OK)
    check_apply(plan, api_url=ep.api_url, token=ep.token)
    with _claim(plan) as claim:
        confirm(plan, yes=args.yes)
        return _finish(run_async(_apply, plan, ep, None, claim), as_json=args.json, preview=preview,
                       plan_requests=planning)


def cmd_resume(args: argparse.Namespace) -> int:
    directory = runs.run_dir(args.run)
    if (waiting := rollout_cli.before_resume(directory)) is not None:
        return waiting
    plan, journal = load_run(directory)  # refused if the run's copy of the plan was changed
    try:
        pending = journal.left()
    finally:
        journal.close()
    ep = endpoint(args)
    if plan.api_url.rstrip("/") != ep.api_url.rstrip("/"):
        raise GuardError(f"the run was made against {plan.api_url}, not {ep.api_url}")
    if pending:  # the guards of apply, for what is left to write
        check_apply(plan, api_url=ep.api_url, force=getattr(args, "force", False), resuming=True)
    return _finish(run_async(_apply, plan, ep, directory))


def cmd_runs(args: argparse.Namespace) -> int:
    found = list_runs()
    if getattr(args, "json", False):
        _out(flows.to_json_bytes({"runs_dir": str(runs.runs_dir()), "runs": [
            {"run_id": r.run_id, "state": r.state, "total": r.total, "counts": dict(r.counts),
             "job": r.job_name, "action": r.action} for r in found]}).decode())
        return int(ExitCode.OK)
    if not found:
        _out(f"no runs in {runs.runs_dir()}")
        return int(ExitCode.OK)
    _out(f"{'RUN':<26} {'STATE':<12} {'TOTAL':>6} {'APPLIED':>8} {'NOOP':>6} {'DRIFTED':>8} {'FAILED':>7} "
         f"{'LEFT':>6}  JOB")
    for r in found:
        c = r.counts
        _out(f"{r.run_id:<26} {r.state:<12} {r.total:>6} {c['applied']:>8} {c['noop']:>6} {c['drifted']:>8} "
             f"{c['failed']:>7} {c['not_attempted']:>6}  {r.job_name} ({r.action})")
    return int(ExitCode.OK)


def cmd_report(args: argparse.Namespace) -> int:
    if args.csv == output.STDOUT and args.json == output.STDOUT:
        raise InputError("only one of --json and --csv - can write to stdout: give --json a file name")
    journal = Journal.open(runs.run_dir(args.run))
    try:
        if output.STDOUT not in (args.csv, args.json):
            _out(report.summary_text(journal))
        if args.csv:
            where = output.write_file(args.csv, report.csv_chunks(journal))
            if where != "stdout":
                output.note("bulkops.report.written", f"wrote {where}", path=where)
        if args.json:
            where = output.write_file(args.json, report.json_chunks(journal))
            if where != "stdout":
                output.note("bulkops.report.written", f"wrote {where}", path=where)
    finally:
        journal.close()
    return int(ExitCode.OK)

