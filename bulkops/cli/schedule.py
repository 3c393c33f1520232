"""``bulkops schedule DIR [--list | --status] [--once] [--health-port N]`` and the unattended flags of
``bulkops run JOB --yes --unattended [--slot ISO] [--approve]``.

The scheduler writes its events as JSON lines on stderr (``bulkops.schedule.slot.<state>`` with job,
slot and run_id; the engine's own events carry them too). ``run --unattended`` is the same slot key and
the same guards for cron, systemd timers and Kubernetes CronJobs.

This module only registers and checks the flags; the work is in :mod:`bulkops.cli.scheduling`, imported
when one of these commands runs, so that every other command starts without the scheduler's
dependencies (prometheus-client).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bulkops.cli import commands
from bulkops.errors import InputError
from bulkops.schedule.slots import parse_slot


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
    if args.slot:
        parse_slot(args.slot)
    from bulkops.cli import scheduling  # noqa: PLC0415 - lazy, see the module docstring

    return scheduling.unattended(args)


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
    p.add_argument("--next", type=int, metavar="N", help="with --list: slots per job (default 3)")
    p.add_argument("--at", metavar="ISO", help="with --list or --once: evaluate as if it were this time")
    p.add_argument("--health-port", type=int, metavar="PORT",
                   help="serve /healthz and /metrics (Prometheus) on this port")
    p.add_argument("--health-host", default="127.0.0.1", help="address for --health-port (default 127.0.0.1)")
    p.set_defaults(handler=cmd_schedule)


def _check(args: argparse.Namespace) -> Path:
    directory = Path(args.directory)
    if not directory.is_dir():
        raise InputError(f"{args.directory!r} is not a directory: give the folder that holds the job files")
    reading = args.list or args.status
    if args.at and not (args.list or args.once):
        raise InputError("--at goes with --list or --once")
    if args.json and not reading:
        raise InputError("--json goes with --list or --status")
    if args.next is not None and not args.list:
        raise InputError("--next goes with --list")
    if args.next is not None and args.next < 1:
        raise InputError(f"--next expects a positive number of slots, got {args.next}")
    if args.health_port is not None and reading:
        raise InputError("--health-port goes with the scheduler, not with --list or --status")
    if args.health_port is not None and not 0 <= args.health_port <= 65535:
        raise InputError(f"--health-port expects a port from 0 to 65535, got {args.health_port}")
    return directory


def cmd_schedule(args: argparse.Namespace) -> int:
    directory = _check(args)
    at = parse_slot(args.at, flag="--at") if args.at else None
    from bulkops.cli import scheduling  # noqa: PLC0415 - lazy, see the module docstring

    if args.list or args.status:
        if args.next is None:
            args.next = 3
        return scheduling.show(args, directory, at)
    return scheduling.serve(args, directory, at)
