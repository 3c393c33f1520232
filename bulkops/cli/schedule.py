"""``bulkops schedule DIR [--list | --status] [--once] [--health-port N]`` and
``bulkops run JOB --yes --unattended [--slot ISO] [--approve]``.

The scheduler writes its events as JSON lines on stderr (``bulkops.schedule.slot.<state>`` with job,
slot and run_id; the engine's own events carry them too). ``run --unattended`` is the same slot key and
the same guards for cron, systemd timers and Kubernetes CronJobs.
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import timedelta
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
from bulkops.plan.preview import preview_text
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


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The unattended flags of ``bulkops run``; the handler sends plain runs on to ``commands.cmd_run``."""
    parser.add_argument("--unattended", action="store_true",
                        help="no prompt: the scheduler's slot key and guards (for cron, systemd, Kubernetes)")
    parser.add_argument("--slot", metavar="ISO", help="with --unattended: the slot to run (default: the "
                        "schedule's latest slot); the run key is (job name, slot)")
    parser.add_argument("--approve", action="store_true",
                        help="with --unattended --slot: run a slot that needs approval past grow_limit")
    parser.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    if not args.unattended:
        if args.slot or args.approve:
            raise InputError("--slot and --approve go with --unattended")
        return commands.cmd_run(args)
    if not args.yes:
        raise InputError("--unattended applies without asking: give --yes as well")
    if args.approve and not args.slot:
        raise InputError("--approve needs --slot: name the slot that needs approval (see `bulkops schedule "
                         "DIR --status`)")
    _events(args.verbose)
    loaded = read_job(args.job)
    return int(anyio.run(_unattended, loaded.job, loaded.notes, _api(args), args))


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
            sys.stdout.write(preview_text(plan, notes) + "\n")
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("schedule", parents=[common], help="run the job files of DIR when their schedules "
                       "say (long-lived); --list, --status")
    p.add_argument("directory", help="folder of job files (*.toml); files without a schedule are left alone")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="print each job's next slots and exit")
    what.add_argument("--status", action="store_true", help="print each job's last outcome and skipped slots")
    what.add_argument("--once", action="store_true", help="run what is due now, wait for it, and exit")
    p.add_argument("--json", action="store_true", help="with --list or --status: JSON")
    p.add_argument("--next", type=int, default=3, metavar="N", help="with --list: slots per job (default 3)")
    p.add_argument("--at", metavar="ISO", help="with --list or --once: evaluate as if it were this time")
    p.add_argument("--health-port", type=int, metavar="PORT",
                   help="serve /healthz and /metrics (Prometheus) on this port")
    p.add_argument("--health-host", default="127.0.0.1", help="address for --health-port (default 127.0.0.1)")
    p.set_defaults(handler=cmd_schedule)


def _dir(args: argparse.Namespace) -> Path:
    directory = Path(args.directory)
    if not directory.is_dir():
        raise InputError(f"{args.directory!r} is not a directory of job files")
    return directory


def _print(data: object, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(text + "\n")
    sys.stdout.flush()


def cmd_schedule(args: argparse.Namespace) -> int:
    directory = _dir(args)
    if args.at and not (args.list or args.once):
        raise InputError("--at goes with --list or --once")
    now = parse_slot(args.at) if args.at else SystemClock().now()
    if args.list or args.status:
        jobs = JobDir(directory, quiet=True)
        jobs.scan()
        if args.list:
            if args.next < 1:
                raise InputError(f"--next expects a positive number of slots, got {args.next}")
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
    _events(args.verbose)
    clock = ManualClock(now) if args.at else SystemClock()
    return int(anyio.run(_serve, directory, _api(args), clock, args))


async def _serve(directory: Path, api: Api, clock: SystemClock | ManualClock,
                 args: argparse.Namespace) -> int:
    scheduler = Scheduler(directory, api, clock=clock)
    try:
        async with anyio.create_task_group() as tg:
            if args.health_port is not None:
                server = HealthServer(scheduler.metrics, clock.now)
                await tg.start(server.serve, args.health_host, args.health_port)
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
