"""The ``bulkops`` command: one subcommand per pipeline stage, plus ``sim``.

Exit codes (``bulkops.errors.ExitCode``): 0 done, 1 some targets failed or drifted, 2 invalid input,
3 refused by a guard (or not confirmed), 4 the run failed or stopped, 5 interrupted (resume it),
6 a rollout awaits approval (``bulkops approve RUN``), 7 a rollout was aborted by its abort rule;
130 interrupted before any request was sent. Errors print one line to stderr (JSON off a terminal);
never a traceback for a bulkops error, never the token.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from bulkops import log
from bulkops.cli import commands, oneliners, output, session
from bulkops.cli import rollout as rollout_cli
from bulkops.cli import schedule as schedule_cli
from bulkops.cli.version import version
from bulkops.errors import BulkopsError, ExitCode
from bulkops.sim import cli as sim_cli

DETAILED_INVALID = 1  # invalid input under `plan --detailed-exitcode`, as Terraform's errors


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked for."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        output.out(f"bulkops {version()}")
        parser.exit()


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument("--api-url", default=default, help="balena API root, without /v7 (default: "
                        "$BALENA_API_URL, else balenaUrl of ~/.balenarc.yml, else balenaCloud)")
    parser.add_argument("--token-file", default=default, metavar="FILE",
                        help="read the API token from FILE (default: $BALENA_API_KEY, $BALENA_TOKEN, "
                        "else the balena CLI's token file)")
    parser.add_argument("--allow-insecure-http", action="store_true",
                        default=False if top else argparse.SUPPRESS,
                        help="allow plain http:// to a non-loopback host")
    parser.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                        help="more log events on stderr (-vv for debug)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulkops", description="Bulk operations for the balena fleet API.")
    _common(parser, top=True)
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    _common(common, top=False)
    p = sub.add_parser("validate", parents=[common], help="check a job file; no request is sent")
    p.add_argument("job")
    p.set_defaults(handler=commands.cmd_validate)
    p = sub.add_parser("plan", parents=[common], help="compute and preview a plan; write it to a file")
    p.add_argument("job", nargs="?", help="job file (or use --retry-failed RUN)")
    p.add_argument("--retry-failed", metavar="RUN",
                   help="plan again the targets of RUN that failed or were not attempted")
    p.add_argument("-o", "--output", help="plan file to write, - for stdout (default: <job name>.plan.json)")
    p.add_argument("--json", action="store_true", help="print the preview as JSON")
    oneliners.plan_arguments(p)
    p.set_defaults(handler=commands.cmd_plan)
    p = sub.add_parser("apply", parents=[common], help="apply a plan file (asks for confirmation)")
    p.add_argument("plan")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask; required without a terminal")
    p.add_argument("--force", action="store_true", help="apply even though the job file is gone")
    p.add_argument("--json", action="store_true", help="print the run's summary as one JSON document")
    p.set_defaults(handler=commands.cmd_apply)
    p = sub.add_parser("run", parents=[common], help="plan, preview, confirm and apply a job")
    p.add_argument("job")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask; required without a terminal")
    p.add_argument("--json", action="store_true", help="print the preview as JSON")
    p.set_defaults(handler=commands.cmd_run)
    schedule_cli.add_run_flags(p)
    p = sub.add_parser("resume", parents=[common], help="continue an interrupted or stopped run")
    p.add_argument("run")
    p.add_argument("--force", action="store_true", help="resume even though the job file is gone")
    p.set_defaults(handler=commands.cmd_resume)
    p = sub.add_parser("undo", parents=[common], help="plan the undo of a run (apply it with `apply`)")
    p.add_argument("run")
    p.add_argument("-o", "--output", help="plan file to write (default: undo-<job name>.plan.json)")
    p.add_argument("--json", action="store_true", help="print the preview as JSON")
    p.set_defaults(handler=commands.cmd_undo)
    p = sub.add_parser("runs", parents=[common], help="list runs with their state and counts")
    p.add_argument("--json", action="store_true", help="print the runs as one JSON document")
    p.set_defaults(handler=commands.cmd_runs)
    p = sub.add_parser("report", parents=[common], help="summary and per-target results of a run")
    p.add_argument("run")
    p.add_argument("--csv", metavar="FILE", help="write per-target rows as CSV to FILE (- for stdout)")
    p.add_argument("--json", nargs="?", const=output.STDOUT, metavar="FILE",
                   help="the report as JSON: on stdout, or written to FILE")
    p.set_defaults(handler=commands.cmd_report)
    oneliners.register(sub, common)
    schedule_cli.register(sub, common)
    rollout_cli.register(sub, common, resume=commands.cmd_resume)
    sim_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    session.begin()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        log.setup(getattr(args, "verbose", 0))
        handler = args.handler
        try:
            code: int = handler(args)
        except BulkopsError as exc:
            code = int(exc.exit_code)
            if code == ExitCode.INVALID_INPUT and getattr(args, "detailed_exitcode", False):
                code = DETAILED_INVALID  # 2 means "changes pending" under --detailed-exitcode
            output.error(str(exc), exit_code=code, kind=type(exc).__name__)
            return code
        return code
    except KeyboardInterrupt:
        return session.interrupted()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
