"""Job files: declarative TOML read into a validated ``Job`` before any request is made.

``load_job(path)`` / ``parse_job(text, path=…)`` check the TOML syntax, every key at every level, the
value types, the keys each action type takes, resource and field names against the v7 model, the
``$filter`` (parsed by ``bulkops.odata`` and its names checked), env var and tag rules, and the fleet
allowlist. Every problem is a ``JobFileError`` naming the file, the dotted key and what is accepted.

``read_job(path)`` / ``read_job_text(text, …)`` give the same ``Job`` plus notes for the preview (for
example that ``set_env BALENA_…`` runs as ``set_config``).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkops.errors import JobFileError
from bulkops.job.action import parse_action, release_kind
from bulkops.job.fields import (
    Where,
    check_job_name,
    check_keys,
    check_slug,
    get_duration,
    get_int,
    get_str,
    get_str_list,
    get_table,
)
from bulkops.job.rollout import parse_rollout
from bulkops.job.schedule import parse_schedule
from bulkops.job.target import parse_target
from bulkops.model import Action, ApplyOptions, Job, Rollout, Target

__all__ = ["LoadedJob", "load_job", "parse_job", "read_job", "read_job_text", "release_kind"]

TOP_KEYS = ("name", "description", "allow_fleets", "target", "action", "options", "rollout", "schedule")
OPTION_KEYS = (
    "batch_size", "max_retry_after", "max_attempts", "max_retry_time", "request_timeout",
    "max_concurrency", "max_plan_age", "confirm_threshold",
)
MAX_DESCRIPTION = 10_000


@dataclass(frozen=True, slots=True)
class LoadedJob:
    """A validated job and what the preview should tell about how it was read."""

    job: Job
    notes: tuple[str, ...] = ()


def _toml(text: str, path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, flags=re.DOTALL)
        if m:
            message = f"TOML syntax error at line {m.group(2)}, column {m.group(3)}: {m.group(1)}"
        elif message.endswith("(at end of document)"):
            message = f"TOML syntax error at the end of the file: {message[:-21]}"
        else:
            message = f"TOML syntax error: {message}"
        raise JobFileError(message, path=path) from None
    except RecursionError:
        raise JobFileError("TOML syntax error: arrays or tables nested too deeply", path=path) from None
    except ValueError as exc:  # e.g. an integer literal past Python's digit limit
        raise JobFileError(f"TOML value not accepted: {exc}", path=path) from None


def _options(where: Where, table: Mapping[str, Any] | None) -> ApplyOptions:
    if table is None:
        return ApplyOptions()
    check_keys(where, table, OPTION_KEYS)
    values: dict[str, Any] = {}
    for name, low, high in (
        ("batch_size", 1, 1000), ("max_attempts", 1, 100), ("max_concurrency", 1, 256),
        ("confirm_threshold", 0, None),
    ):
        got = get_int(where, table, name, low=low, high=high)
        if got is not None:
            values[name] = got
    for name in ("max_retry_after", "max_retry_time", "request_timeout"):
        span = get_duration(where, table, name, seconds_ok=True)
        if span is not None:
            values[name] = span.total_seconds()
    age = get_duration(where, table, "max_plan_age", seconds_ok=True)
    if age is not None:
        values["max_plan_age"] = age
    return ApplyOptions(**values)


def _rollout(where: Where, doc: Mapping[str, Any], target: Target, action: Action) -> Rollout | None:
    table = get_table(where, doc, "rollout", required=False)
    return None if table is None else parse_rollout(where.sub("rollout"), table, target.resource, action)


def _allowlist(where: Where, doc: Mapping[str, Any], target: Target, to_fleet: str | None) -> tuple[str, ...]:
    raw = get_str_list(where, doc, "allow_fleets")
    if raw is None:
        return ()
    if not raw:
        raise where.error(
            "allow_fleets", "expected at least one fleet slug (leave the key out to allow any fleet)"
        )
    allowed = tuple(check_slug(where, f"allow_fleets[{i}]", s) for i, s in enumerate(raw))
    shown = ", ".join(allowed)
    key = "target.fleet" if len(target.fleets) == 1 else "target.fleets"
    for slug in target.fleets:
        if slug not in allowed:
            raise where.error(key, f"fleet {slug!r} is not in allow_fleets ({shown})")
    if to_fleet is not None and to_fleet not in allowed:
        raise where.error("action.to_fleet", f"fleet {to_fleet!r} is not in allow_fleets ({shown})")
    return allowed


def _job(text: str, path: str, fingerprint: str, allow_reserved: bool) -> LoadedJob:
    doc = _toml(text, path)
    top = Where(path)
    check_keys(top, doc, TOP_KEYS)
    name = get_str(top, doc, "name", required=True)
    assert name is not None
    check_job_name(top, name)
    description = get_str(top, doc, "description", required=False) or ""
    if len(description) > MAX_DESCRIPTION:
        raise top.error(
            "description", f"expected at most {MAX_DESCRIPTION:,} characters, got {len(description):,}"
        )
    target_table = get_table(top, doc, "target", required=True)
    action_table = get_table(top, doc, "action", required=True)
    assert target_table is not None and action_table is not None
    target = parse_target(top.sub("target"), target_table)
    action, notes = parse_action(top.sub("action"), action_table, target.resource, text)
    if target.offline_for is not None and target.resource != "device":
        raise top.error("target.offline_for", "offline_for applies to devices only")
    options = _options(top.sub("options"), get_table(top, doc, "options", required=False))
    allow = _allowlist(top, doc, target, action.to_fleet)
    return LoadedJob(
        Job(
            name=name, target=target, action=action, description=description, allow_fleets=allow,
            options=options, path=path, fingerprint=fingerprint,
            rollout=_rollout(top, doc, target, action),
            schedule=parse_schedule(top, doc, target, action),
        ),
        notes,
    )


def read_job_text(text: str, *, path: str = "<string>", allow_reserved: bool = False) -> LoadedJob:
    """Validate job file ``text``. ``allow_reserved`` is kept for callers of earlier versions: every
    top-level table is now executed, none is reserved."""
    fingerprint = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return _job(text, path, fingerprint, allow_reserved)


def read_job(path: str | Path, *, allow_reserved: bool = False) -> LoadedJob:
    """Read and validate the job file at ``path``; its fingerprint is the sha256 of the file's bytes."""
    shown = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise JobFileError(f"cannot read the job file: {exc.strerror or exc}", path=shown) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobFileError(f"not UTF-8 text: byte {exc.start} cannot be decoded", path=shown) from None
    text = text.removeprefix("\ufeff")
    return _job(text, shown, hashlib.sha256(data).hexdigest(), allow_reserved)


def load_job(path: str | Path) -> Job:
    """The validated ``Job`` in the file at ``path``."""
    return read_job(path).job


def parse_job(text: str, *, path: str = "<string>") -> Job:
    """The validated ``Job`` in ``text``; ``path`` names it in error messages."""
    return read_job_text(text, path=path).job
