"""One-liners for the everyday change, as balena users type them:

    bulkops env set NAME VALUE --fleet SLUG [--filter …] [--service S]
    bulkops env rm NAME --fleet SLUG
    bulkops tag set KEY VALUE --fleet SLUG      bulkops tag rm KEY --fleet SLUG
    bulkops move --to SLUG --fleet SLUG --filter …
    bulkops pin RELEASE --fleet SLUG --filter …

Each writes the job file it stands for (``--print-job`` prints it and sends nothing), reads it back
through the same loader as a job file, and goes through the same plan, preview, guards, confirmation
and journal as ``bulkops run`` (or ``bulkops plan`` with ``--plan-only``). Env vars and tags are set
on each selected device, or with ``--resource fleet`` on the fleets themselves (balena's ``env add
--fleet``).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from bulkops.cli import output
from bulkops.errors import ExitCode, InputError
from bulkops.job.load import LoadedJob, read_job_text

__all__ = ["job_text", "plan_arguments", "register"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for c in value:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _array(values: list[Any]) -> str:
    return "[" + ", ".join(toml_string(v) if isinstance(v, str) else str(v) for v in values) + "]"


def _job_name(args: argparse.Namespace) -> str:
    if args.name:
        return str(args.name)
    if args.command == "env":
        words = ["env", args.verb, args.var]
    elif args.command == "tag":
        words = ["tag", args.verb, args.key]
    elif args.command == "move":
        words = ["move-to", args.to]
    else:
        words = ["pin", args.release]
    return _UNSAFE.sub("-", "-".join(words)).strip("-.")[:100] or "one-liner"


def _action(args: argparse.Namespace) -> list[str]:
    if args.command == "env":
        service = getattr(args, "service", None)
        kind = ("set_service_env" if args.verb == "set" else "remove_service_env") if service else \
            ("set_env" if args.verb == "set" else "remove_env")
        lines = [f"type = {toml_string(kind)}"]
        if service:
            lines.append(f"service = {toml_string(service)}")
        lines.append(f"name = {toml_string(args.var)}")
        if args.verb == "set":
            lines.append(f"value = {toml_string(args.value)}")
        return lines
    if args.command == "tag":
        lines = [f"type = {toml_string('set_tag' if args.verb == 'set' else 'remove_tag')}",
                 f"key = {toml_string(args.key)}"]
        return lines + ([f"value = {toml_string(args.value)}"] if args.verb == "set" else [])
    if args.command == "move":
        return ['type = "move"', f"to_fleet = {toml_string(args.to)}"]
    return ['type = "pin"', f"release = {toml_string(args.release)}"]


def job_text(args: argparse.Namespace) -> str:
    """The job file a one-liner stands for."""
    verb = f" {args.verb}" if getattr(args, "verb", None) else ""
    lines = [f"# bulkops {args.command}{verb}: the job this one-liner runs",
             f"name = {toml_string(_job_name(args))}"]
    if args.allow_fleet:
        lines.append(f"allow_fleets = {_array(args.allow_fleet)}")
    resource = getattr(args, "resource", "device")
    lines += ["", "[target]", f"resource = {toml_string(resource)}"]
    if args.fleet:
        lines.append(f"fleet = {toml_string(args.fleet[0])}" if len(args.fleet) == 1
                     else f"fleets = {_array(args.fleet)}")
    if args.filter:
        lines.append(f"filter = {toml_string(args.filter)}")
    if args.uuid:
        lines.append(f"uuids = {_array(args.uuid)}")
    if args.uuids_file:
        lines.append(f"uuids_file = {toml_string(str(Path(args.uuids_file).resolve()))}")
    if args.id:
        lines.append(f"ids = {_array(args.id)}")
    bounds = [f"{k} = {v}" for k, v in (("min", args.expect_min), ("max", args.expect_max)) if v is not None]
    if bounds:
        lines.append(f"expect = {{ {', '.join(bounds)} }}")
    lines += ["", "[action]", *_action(args)]
    return "\n".join(lines) + "\n"


def _handle(args: argparse.Namespace) -> int:
    from bulkops.cli import commands  # noqa: PLC0415 - commands imports this module for its parser

    text = job_text(args)
    if args.print_job:
        output.out(text)
        return int(ExitCode.OK)
    if not (args.fleet or args.filter or args.uuid or args.uuids_file or args.id):
        raise InputError("give a selection: --fleet SLUG, --filter ODATA, --uuid UUID, --uuids-file FILE or "
                         "--id ID (a one-liner never targets everything)")
    where = f"<bulkops {args.command}{' ' + args.verb if getattr(args, 'verb', None) else ''}>"
    loaded = read_job_text(text, path=where)
    loaded = LoadedJob(replace(loaded.job, path=""), loaded.notes)  # no job file to check at apply
    if args.plan_only:
        return commands.plan_loaded(args, loaded)
    return commands.run_loaded(args, loaded)


def _selection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("selection (ANDed; at least one)")
    g.add_argument("--fleet", action="append", metavar="SLUG", help="devices of this fleet (repeatable)")
    g.add_argument("--filter", metavar="ODATA", help="an OData $filter on the devices (or fleets)")
    g.add_argument("--uuid", action="append", metavar="UUID", help="this device (repeatable)")
    g.add_argument("--uuids-file", metavar="FILE", help="the devices listed in FILE, one uuid per line")
    g.add_argument("--id", action="append", type=int, metavar="ID", help="this row id (repeatable)")
    g.add_argument("--expect-min", type=int, metavar="N", help="refuse a plan with fewer targets")
    g.add_argument("--expect-max", type=int, metavar="N", help="refuse a plan with more targets")
    g.add_argument("--allow-fleet", action="append", metavar="SLUG",
                   help="allow_fleets of the job (repeatable)")
    m = p.add_argument_group("what to do")
    m.add_argument("--name", help="the job's name (default: made from the command)")
    m.add_argument("--print-job", action="store_true", help="print the equivalent job file; send nothing")
    m.add_argument("--plan-only", action="store_true", help="plan and preview, write the plan; apply nothing")
    m.add_argument("-y", "--yes", action="store_true", help="do not ask; required without a terminal")
    m.add_argument("--json", action="store_true", help="print the preview (and the run) as one JSON document")
    m.add_argument("-o", "--output", help="with --plan-only: the plan file to write (- for stdout)")
    plan_arguments(p)
    p.set_defaults(handler=_handle, retry_failed=None)


def plan_arguments(p: argparse.ArgumentParser) -> None:
    """``--csv FILE|-`` and ``--detailed-exitcode``, for ``plan`` and the one-liners."""
    p.add_argument("--csv", metavar="FILE", help="write every target (id, uuid, name, fleet, change, before, "
                   "after) as CSV to FILE, - for stdout")
    p.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 0 when there is nothing to do, 2 when changes are pending (errors: 1, 3, 4, 5)")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``env``, ``tag``, ``move`` and ``pin`` to the ``bulkops`` parser."""
    for noun, what in (("env", "environment variables"), ("tag", "tags")):
        parser = sub.add_parser(noun, help=f"set or remove {what} on many devices (a one-liner job)")
        verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        first = "var" if noun == "env" else "key"
        set_p = verbs.add_parser("set", parents=[common], help=f"create or change {what}")
        set_p.add_argument(first, metavar="NAME" if noun == "env" else "KEY")
        set_p.add_argument("value", metavar="VALUE")
        rm_p = verbs.add_parser("rm", parents=[common], help=f"remove {what}")
        rm_p.add_argument(first, metavar="NAME" if noun == "env" else "KEY")
        for p in (set_p, rm_p):
            p.add_argument("--resource", choices=("device", "fleet"), default="device",
                           help="on each selected device (default) or on the fleets themselves")
            if noun == "env":
                p.add_argument("--service", metavar="NAME", help="a device service variable of this service")
            _selection(p)
            p.set_defaults(command=noun)
    p = sub.add_parser("move", parents=[common], help="move devices to another fleet (a one-liner job)")
    p.add_argument("--to", required=True, metavar="SLUG", help="the destination fleet")
    _selection(p)
    p.set_defaults(command="move", verb=None)
    p = sub.add_parser("pin", parents=[common], help="pin devices or fleets to a release (a one-liner job)")
    p.add_argument("release", metavar="RELEASE", help="a semver such as 1.5.0, or a commit")
    p.add_argument("--resource", choices=("device", "fleet"), default="device",
                   help="pin each selected device (default), or the fleets' target release")
    _selection(p)
    p.set_defaults(command="pin", verb=None)
