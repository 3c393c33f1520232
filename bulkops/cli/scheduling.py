"""What ``bulkops schedule DIR`` and ``bulkops run JOB --unattended`` do once their flags are checked
(:mod:`bulkops.cli.schedule`): imported only when one of them runs.

The scheduler writes its events as JSON lines on stderr (``bulkops.schedule.slot.<state>`` with job,
slot and run_id; the engine's own events carry them too). ``run --unattended`` is the same slot key and
the same guards for cron, systemd timers and Kubernetes CronJobs.
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import orjson
import structlog

from bulkops import log
from bulkops.apply.engine import RunControl
from bulkops.cli import commands
from bulkops.errors import ExitCode, InputError
from bulkops.job.load import read_job
from bulkops.journal import report, runs
from bulkops.journal.journal import Journal
from bulkops.model import Job, Plan
from bulkops.plan.preview import preview_json, preview_text, to_json_bytes
from bulkops.schedule import status
from bulkops.schedule.clock import ManualClock, SystemClock
from bulkops.schedule.health import HealthServer
from bulkops.schedule.jobs import JobDir
from bulkops.schedule.run import Api, SlotResult, SlotRunner
from bulkops.schedule.scheduler import Scheduler, decide_and_claim
from bulkops.schedule.slots import latest_slot, parse_slot, slot_key
from bulkops.schedule.store import SlotState, SlotStore, new_owner

EXIT = {
    SlotState.DONE: ExitCode.OK, SlotState.NOTHING_TO_DO: ExitCode.OK,
    SlotState.SOME_FAILED: ExitCode.SOME_FAILED,
    SlotState.SKIPPED: ExitCode.REFUSED_BY_GUARD, SlotState.NEEDS_APPROVAL: ExitCode.REFUSED_BY_GUARD,
    SlotState.REFUSED: ExitCode.REFUSED_BY_GUARD, SlotState.FAILED: ExitCode.RUN_FAILED,
    SlotState.STOPPED: ExitCode.RUN_FAILED, SlotState.INTERRUPTED: ExitCode.INTERRUPTED,
}


def _say(text: str) -> None:
    print(f"bulkops: {text}", file=sys.stderr)


def _events(verbosity: int) -> None:
    """JSON-line events at info level, each carrying the job, slot and run_id bound around a run."""
    log.setup(max(verbosity, 1), json=True)
    processors = list(structlog.get_config()["processors"])
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, *processors])


def _api(args: argparse.Namespace) -> Api:
    ep = commands.endpoint(args)
    return Api(ep.api_url, ep.token, ep.allow_insecure_http)


# --- bulkops run JOB --unattended ------------------------------------------------------------------


async def _watch(control: RunControl) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        count = 0
        async for _ in signals:
            count += 1
            _say("stopping: no new requests; waiting for those in flight (again to stop at once)")
            if count > 1:
                control.abort()
            else:
                control.stop()


async def _unattended(job: Job, notes: tuple[str, ...], api: Api, args: argparse.Namespace) -> ExitCode:
    clock = SystemClock()
    store = SlotStore.open()
    owner = new_owner()
    now = clock.now()
    try:
        if args.slot:
            slot = parse_slot(args.slot)
            slots = [slot] if store.claim(job.name, slot, owner, now, approve=args.approve) else []
            if not slots:
                taken = store.get(job.name, slot)
                assert taken is not None
                again = " (it does not need approval)" if args.approve else ""
                _say(f"slot {slot_key(slot)} of job {job.name} was taken already{again}: {taken.state}"
                     + (f", run {taken.run_id}" if taken.run_id else "") + "; nothing to do")
                return ExitCode.OK if not args.approve else ExitCode.REFUSED_BY_GUARD
        else:
            if job.schedule is None:
                raise InputError(f"job {job.name} has no schedule: give --slot ISO (the run key), e.g. "
                                 f"--slot {slot_key(now.replace(second=0))}")
            latest = latest_slot(job.schedule, now)
            first = latest - timedelta(seconds=1) if latest is not None else None
            slots, skipped = decide_and_claim(store, job, now, owner, jitter=False, first_cursor=first)
            for skip in skipped:
                _say(f"slot {slot_key(skip.slot)} of job {job.name} skipped ({skip.reason}): {skip.detail}")
            if not slots:
                last = store.last(job.name)
                shown = f" (last: {last.slot} {last.state})" if last else ""
                _say(f"no slot of job {job.name} is due now to run{shown}")
                return ExitCode.OK

        def show(plan: Plan) -> None:
            if args.json:
                text = to_json_bytes(preview_json(plan, notes)).decode()
            else:
                text = preview_text(plan, notes)
            sys.stdout.write(text.rstrip("\n") + "\n")
            sys.stdout.flush()

        runner = SlotRunner(api, store, clock, on_plan=show)
        code = ExitCode.OK
        async with anyio.create_task_group() as tg:
            control = RunControl()
            tg.start_soon(_watch, control)
            for slot in slots:
                result = await runner.run(job, slot, control=control, approve=args.approve)
                code = max(code, _report(result))
            tg.cancel_scope.cancel()
        return code
    finally:
        store.close()


def _report(result: SlotResult) -> ExitCode:
    if result.run_id:
        journal = Journal.open(runs.run_dir(result.run_id))
        try:
            sys.stdout.write(report.summary_text(journal) + "\n")
        finally:
            journal.close()
    _say(f"slot {slot_key(result.slot)} of job {result.job}: {result.state}"
         + (f": {result.detail}" if result.detail else ""))
    return EXIT[result.state]


# --- bulkops schedule DIR --------------------------------------------------------------------------


def _print(data: object, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(text + "\n")
    sys.stdout.flush()


def unattended(args: argparse.Namespace) -> int:
    """``bulkops run JOB --yes --unattended [--slot ISO] [--approve]`` (flags checked by the caller)."""
    _events(args.verbose)
    loaded = read_job(args.job)
    return int(anyio.run(_unattended, loaded.job, loaded.notes, _api(args), args))


def show(args: argparse.Namespace, directory: Path, at: datetime | None) -> int:
    """``--list`` or ``--status``: print, and exit 2 when a job file does not validate."""
    now = at or SystemClock().now()
    jobs = JobDir(directory, quiet=True)
    jobs.scan()
    if args.list:
        data = status.listing(jobs, now, args.next)
        _print(data, args.json, status.listing_text(data))
    else:
        store = SlotStore.open()
        try:
            data = status.status(jobs, store, now)
        finally:
            store.close()
        _print(data, args.json, status.status_text(data))
    return int(ExitCode.INVALID_INPUT if jobs.invalid() else ExitCode.OK)


def serve(args: argparse.Namespace, directory: Path, at: datetime | None) -> int:
    """The scheduler: long-lived, or one tick with ``--once`` (``at``: as if it were then)."""
    _events(args.verbose)
    clock = ManualClock(at) if at is not None else SystemClock()
    return int(anyio.run(_serve, directory, _api(args), clock, args))


async def _serve(directory: Path, api: Api, clock: SystemClock | ManualClock,
                 args: argparse.Namespace) -> int:
    scheduler = Scheduler(directory, api, clock=clock)
    try:
        server = HealthServer(scheduler.metrics, clock.now)
        listener = None
        if args.health_port is not None:
            listener = await server.listen(args.health_host, args.health_port)
        async with anyio.create_task_group() as tg:
            if listener is not None:
                tg.start_soon(server.serve, listener)
            results = await scheduler.serve(once=args.once)
            tg.cancel_scope.cancel()
    finally:
        scheduler.store.close()
    code = ExitCode.OK
    for r in results:
        if r.state in {SlotState.INTERRUPTED, SlotState.STOPPED}:
            _say(f"job {r.job} slot {slot_key(r.slot)}: run {r.run_id} {r.state}; continue it with "
                 f"`bulkops resume {r.run_id}`")
            code = max(code, EXIT[r.state])
        elif args.once:
            code = max(code, EXIT[r.state])
    if args.once and scheduler.jobs.invalid():
        code = max(code, ExitCode.INVALID_INPUT)
    return int(code)
