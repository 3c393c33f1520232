"""The handlers behind each ``bulkops`` subcommand; each returns an exit code."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from bulkops.api.limiter import AdaptiveLimiter
from bulkops.apply.runner import load_run, new_run, open_client, run_plan, verify_token
from bulkops.cli import rollout as rollout_cli
from bulkops.cli.progress import ProgressLine
from bulkops.config import load_settings
from bulkops.errors import ExitCode, GuardError, InputError
from bulkops.job.load import read_job
from bulkops.journal import report, runs
from bulkops.journal.journal import DONE, Journal, list_runs
from bulkops.journal.output import STDOUT, check_output
from bulkops.journal.plans import PlanClaim
from bulkops.journal.runs import PLAN_FILE
from bulkops.model import ChangeKind, Job, Outcome, Plan, RunState, RunSummary
from bulkops.plan.allowlist import check_plan_fleets
from bulkops.plan.file import read_plan, write_plan
from bulkops.plan.guards import check_apply
from bulkops.plan.make import make_plan
from bulkops.plan.preview import preview_json, preview_text, to_json_bytes
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
    settings = load_settings(api_url=args.api_url, allow_insecure_http=args.allow_insecure_http)
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
    active = sum(1 for it in plan.items if it.kind is not ChangeKind.NOOP)
    if not active:
        return
    destructive = any(it.kind is ChangeKind.DELETE for it in plan.items)
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
    if destructive and active > plan.options.confirm_threshold:
        answer = input(f"This deletes rows of {active} targets. Type {active} to go on: ")
        if answer.strip() != str(active):
            raise GuardError("the typed count did not match: nothing was applied")
        return
    answer = input(f"Apply {active} changes? [y/N] ")
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


def _write_plan(plan: Plan, out: str, notes: tuple[str, ...], as_json: bool, what: str = "plan") -> None:
    """Write the plan, then the preview: on stdout, or on stderr when the plan itself went to stdout."""
    write_plan(plan, out)
    _show_preview(plan, notes, as_json, to_stderr=out == STDOUT)
    if out == STDOUT:
        print(f"bulkops: {what} written to stdout", file=sys.stderr)
    else:
        print(f"bulkops: {what} written to {out} (apply it with `bulkops apply {out}`)", file=sys.stderr)


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = read_job(args.job)
    job = loaded.job
    _out(f"{args.job}: ok — {job.name}: {job.action.type.value} on {job.target.resource}")
    for note in loaded.notes:
        _out(f"note: {note}")
    return int(ExitCode.OK)


async def _plan(job: Job, ep: Endpoint) -> Plan:
    insecure = ep.allow_insecure_http
    async with open_client(ep.api_url, ep.token, job.options, allow_insecure_http=insecure) as client:
        return await make_plan(job, client, api_url=ep.api_url)


def _show_preview(plan: Plan, notes: tuple[str, ...], as_json: bool, *, to_stderr: bool = False) -> None:
    text = to_json_bytes(preview_json(plan, notes)).decode() if as_json else preview_text(plan, notes)
    if to_stderr:
        print(text.rstrip("\n"), file=sys.stderr)
    else:
        _out(text)


async def _retry(directory: Path, ep: Endpoint) -> Plan:
    plan, journal = load_run(directory)
    try:
        insecure = ep.allow_insecure_http
        async with open_client(ep.api_url, ep.token, plan.options, allow_insecure_http=insecure) as client:
            return await retry_plan(plan, journal, client)
    finally:
        journal.close()


async def _undo(directory: Path, ep: Endpoint) -> Plan:
    plan, journal = load_run(directory)
    try:
        insecure = ep.allow_insecure_http
        async with open_client(ep.api_url, ep.token, plan.options, allow_insecure_http=insecure) as client:
            return await make_undo_plan(plan, journal, client)
    finally:
        journal.close()


def cmd_undo(args: argparse.Namespace) -> int:
    directory = runs.run_dir(args.run)
    _check_plan_output(args)
    ep = endpoint(args)
    original = read_plan(directory / PLAN_FILE)
    if original.api_url.rstrip("/") != ep.api_url.rstrip("/"):
        raise GuardError(f"the run was made against {original.api_url}, not {ep.api_url}")
    plan = seal_plan(run_async(_undo, directory, ep), ep.token)
    _write_plan(plan, args.output or f"{plan.job_name}.plan.json", (), args.json, "undo plan")
    return int(ExitCode.OK)


def cmd_plan(args: argparse.Namespace) -> int:
    if args.retry_failed:
        if args.job:
            raise InputError("give a job file or --retry-failed RUN, not both")
        directory = runs.run_dir(args.retry_failed)
        _check_plan_output(args)
        ep = endpoint(args)
        plan = seal_plan(run_async(_retry, directory, ep), ep.token)
        _write_plan(plan, args.output or f"{plan.job_name}.retry.plan.json", (), args.json)
        return int(ExitCode.OK)
    if not args.job:
        raise InputError("give a job file (or --retry-failed RUN)")
    loaded = read_job(args.job)
    _check_plan_output(args)
    ep = endpoint(args)
    plan = seal_plan(run_async(_plan, loaded.job, ep), ep.token)
    _write_plan(plan, plan_output(args, loaded.job.name), loaded.notes, args.json)
    return int(ExitCode.OK)


async def _apply(plan: Plan, ep: Endpoint, run_dir: Path | None,
                 claim: PlanClaim | None = None) -> RunSummary:
    """Check the token (one GET) and the allowlist on the server, then create or reopen the run and
    apply it. Nothing is written before both checks pass."""
    limiter = AdaptiveLimiter(max_concurrency=plan.options.max_concurrency)
    progress = ProgressLine(limiter)
    async with open_client(ep.api_url, ep.token, plan.options, allow_insecure_http=ep.allow_insecure_http,
                           limiter=limiter) as client:
        if run_dir is None:
            if any(it.kind is not ChangeKind.NOOP for it in plan.items):
                await verify_token(client, plan)
            await check_plan_fleets(plan, client)
            journal = new_run(plan, claim=claim)
        else:
            plan, journal = load_run(run_dir)
            try:
                pending = sum(1 for state in journal.states().values() if state != DONE)
                if pending:
                    await verify_token(client, plan)
                await check_plan_fleets(plan, client)
            except BaseException:
                journal.close()
                raise
            print(f"bulkops: resuming run {journal.run_id}: {pending} items left", file=sys.stderr)
        try:
            print(f"bulkops: run {journal.run_id}", file=sys.stderr)
            return await run_plan(plan, client, journal, on_progress=progress)
        finally:
            journal.close()


def _finish(summary: RunSummary) -> int:
    journal_dir = runs.run_dir(summary.run_id)
    journal = Journal.open(journal_dir)
    try:
        _out(report.summary_text(journal))
    finally:
        journal.close()
    print(f"bulkops: {summary.requests} requests sent ({summary.throttled} throttled) "
          f"in {summary.elapsed:.2f}s", file=sys.stderr)
    code = exit_code(summary)
    if summary.state in {RunState.INTERRUPTED, RunState.STOPPED}:
        if summary.message and summary.state is RunState.STOPPED:
            print(f"bulkops: run stopped: {summary.message}", file=sys.stderr)
        print(f"bulkops: continue with `bulkops resume {summary.run_id}`", file=sys.stderr)
    rollout_cli.after_run(summary)
    return int(code)


def cmd_apply(args: argparse.Namespace) -> int:
    plan = read_plan(args.plan)
    ep = endpoint(args)
    check_apply(plan, api_url=ep.api_url, force=args.force, token=ep.token)
    with _claim(plan) as claim:
        confirm(plan, yes=args.yes)
        return _finish(run_async(_apply, plan, ep, None, claim))


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
    loaded = read_job(args.job)
    ep = endpoint(args)
    plan = seal_plan(run_async(_plan, loaded.job, ep), ep.token)
    _show_preview(plan, loaded.notes, args.json)
    if all(it.kind is ChangeKind.NOOP for it in plan.items):
        print("bulkops: nothing to apply; no run was started", file=sys.stderr)
        return int(ExitCode.OK)
    check_apply(plan, api_url=ep.api_url, token=ep.token)
    with _claim(plan) as claim:
        confirm(plan, yes=args.yes)
        return _finish(run_async(_apply, plan, ep, None, claim))


def cmd_resume(args: argparse.Namespace) -> int:
    directory = runs.run_dir(args.run)
    if (waiting := rollout_cli.before_resume(directory)) is not None:
        return waiting
    plan, journal = load_run(directory)  # refused if the run's copy of the plan was changed
    try:
        pending = any(state != DONE for state in journal.states().values())
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
    if args.csv == STDOUT and args.json == STDOUT:
        raise InputError("--csv and --json cannot both be - (stdout)")
    for path, what in ((args.csv, "the CSV report"), (args.json, "the JSON report")):
        if path:
            check_output(path, what)
    journal = Journal.open(runs.run_dir(args.run))
    try:
        summary = report.summary_text(journal)
        if STDOUT in (args.csv, args.json):  # stdout holds the file alone; the summary goes to stderr
            print(summary, file=sys.stderr)
        else:
            _out(summary)
        if args.csv:
            report.write_csv(journal, args.csv)
            if args.csv != STDOUT:
                print(f"bulkops: wrote {args.csv}", file=sys.stderr)
        if args.json:
            report.write_json(journal, args.json)
            if args.json != STDOUT:
                print(f"bulkops: wrote {args.json}", file=sys.stderr)
    finally:
        journal.close()
    return int(ExitCode.OK)

