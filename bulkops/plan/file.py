"""The plan file: a Plan as JSON (orjson), written owner-only (0600). It never holds the token.

The file is written as a header, then one item per line, and read back the same way, a line at a time,
into a :class:`~bulkops.spool.Spool`: a plan of any size is never held whole in memory. A file laid out
otherwise (edited by hand or by a tool) is still read, as one JSON document.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bulkops.errors import PlanFileError
from bulkops.job.rollout import rollout_from_json, rollout_to_json
from bulkops.journal.output import write_output
from bulkops.model import (
    PLAN_FORMAT,
    Action,
    ActionType,
    ApplyOptions,
    ChangeKind,
    Expect,
    Plan,
    PlanItem,
)
from bulkops.spool import Spool

READABLE_FORMATS = (1, PLAN_FORMAT)


def plan_to_json(plan: Plan, *, with_items: bool = True) -> dict[str, Any]:
    a, o = plan.action, plan.options
    return {
        "format": plan.format,
        "plan_id": plan.plan_id,
        "job_name": plan.job_name,
        "job_path": plan.job_path,
        "job_fingerprint": plan.job_fingerprint,
        "api_url": plan.api_url,
        "created_at": plan.created_at.isoformat(),
        "target_resource": plan.target_resource,
        "compiled_filter": plan.compiled_filter,
        "action": {"type": a.type.value, "name": a.name, "key": a.key, "value": a.value,
                   "fields": dict(a.fields), "to_fleet": a.to_fleet, "release": a.release}
                  | ({"service": a.service} if a.service is not None else {}),
        "expect": {"min": plan.expect.min, "max": plan.expect.max, "max_share": plan.expect.max_share},
        "allow_fleets": list(plan.allow_fleets),
        "fleets": list(plan.fleets),
        "fleet_ids": dict(plan.fleet_ids),
        "undo_of": plan.undo_of,
        "precondition": plan.precondition,
        "options": {"batch_size": o.batch_size, "max_retry_after": o.max_retry_after,
                    "max_attempts": o.max_attempts, "max_retry_time": o.max_retry_time,
                    "request_timeout": o.request_timeout, "max_concurrency": o.max_concurrency,
                    "max_plan_age": o.max_plan_age.total_seconds(),
                    "confirm_threshold": o.confirm_threshold},
        "population": plan.population,
        "irreversible": plan.irreversible,
        "warnings": list(plan.warnings),
        "counts": plan.counts(),
        "rollout": rollout_to_json(plan.rollout),
        "seal": plan.seal,
    } | ({"items": [item_to_json(it) for it in plan.items]} if with_items else {})


def item_to_json(it: PlanItem) -> dict[str, Any]:
    return {"target_id": it.target_id, "label": it.label, "kind": it.kind.value, "resource": it.resource,
            "row_id": it.row_id, "before": _plain(it.before), "after": _plain(it.after),
            "key": dict(it.key), "stage": it.stage} | ({"skip": it.skip} if it.skip else {})


def plan_chunks(plan: Plan) -> Iterator[bytes]:
    """The plan file's bytes in pieces: the header indented, then one item per line. Streaming the
    items keeps a 100,000-target plan from being held twice in memory as JSON."""
    head = orjson.dumps(plan_to_json(plan, with_items=False), option=orjson.OPT_INDENT_2)
    yield head[: head.rindex(b"}")].rstrip() + b',\n  "items": ['
    for n, it in enumerate(plan.items):
        yield (b",\n    " if n else b"\n    ") + encode_item(it)
    yield b"\n  ]\n}\n"


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)


def item_from_json(i: Mapping[str, Any]) -> PlanItem:
    return PlanItem(int(i["target_id"]), str(i["label"]), ChangeKind(i["kind"]), str(i["resource"]),
                    i["row_id"], i["before"], i["after"], dict(i["key"]), int(i.get("stage", 0)),
                    str(i.get("skip", "")))


def encode_item(it: PlanItem) -> bytes:
    return orjson.dumps(item_to_json(it))


def decode_item(data: bytes) -> PlanItem:
    return item_from_json(orjson.loads(data))


def item_spool(items: Iterable[PlanItem] = ()) -> Spool[PlanItem]:
    """An empty (or filled) on-disk sequence of plan items."""
    return Spool(encode_item, decode_item, items)


def plan_from_json(data: Mapping[str, Any], items: Spool[PlanItem] | None = None) -> Plan:
    fmt = data.get("format")
    if fmt not in READABLE_FORMATS:
        raise PlanFileError(f"plan format {fmt!r} is not supported (this bulkops reads formats "
                            f"{', '.join(map(str, READABLE_FORMATS))})")
    a, e, o = data["action"], data["expect"], data["options"]
    return Plan(
        job_name=data["job_name"],
        job_path=data["job_path"],
        job_fingerprint=data["job_fingerprint"],
        api_url=data["api_url"],
        created_at=datetime.fromisoformat(data["created_at"]),
        target_resource=data["target_resource"],
        compiled_filter=data["compiled_filter"],
        action=Action(ActionType(a["type"]), a.get("name"), a.get("key"), a.get("value"),
                      dict(a.get("fields") or {}), a.get("to_fleet"), a.get("release"), a.get("service")),
        items=items if items is not None else item_spool(item_from_json(i) for i in data["items"]),
        population=int(data["population"]),
        expect=Expect(e.get("min"), e.get("max"), e.get("max_share")),
        allow_fleets=tuple(data.get("allow_fleets", ())),
        options=ApplyOptions(
            batch_size=int(o["batch_size"]), max_retry_after=float(o["max_retry_after"]),
            max_attempts=int(o["max_attempts"]), max_retry_time=float(o["max_retry_time"]),
            request_timeout=float(o["request_timeout"]), max_concurrency=int(o["max_concurrency"]),
            max_plan_age=timedelta(seconds=float(o["max_plan_age"])),
            confirm_threshold=int(o["confirm_threshold"]),
        ),
        warnings=tuple(data.get("warnings", ())),
        irreversible=bool(data.get("irreversible", False)),
        plan_id=str(data.get("plan_id", "")),
        format=fmt,
        fleets=tuple(data.get("fleets", ())),
        fleet_ids={str(k): int(v) for k, v in (data.get("fleet_ids") or {}).items()},
        undo_of=str(data.get("undo_of", "")),
        precondition=_precondition(data),
        rollout=rollout_from_json(data.get("rollout")),
        seal=str(data.get("seal") or ""),
    )


def _precondition(data: Mapping[str, Any]) -> str:
    """Format 2 stores it; a format-1 plan's compiled filter is its target selection (an undo has none)."""
    if data.get("format") == 1:
        return "" if data.get("undo_of") else str(data.get("compiled_filter") or "")
    return str(data.get("precondition") or "")


def write_plan(plan: Plan, path: str | Path) -> None:
    """Write the plan to ``path``: a regular file is replaced atomically (mode 0600), ``-`` is stdout, a
    symlink is written through, a character device or FIFO in place (:mod:`bulkops.journal.output`)."""
    write_output(path, plan_chunks(plan), "the plan")


def read_plan(path: str | Path) -> Plan:
    """Read a plan file; :class:`PlanFileError` if it is missing, not JSON, or not a plan."""
    try:
        with open(path, "rb") as f:
            streamed = _read_lines(f)
            if streamed is None:
                f.seek(0)
                data, items = orjson.loads(f.read()), None
            else:
                data, items = streamed
    except FileNotFoundError as exc:
        raise PlanFileError(f"{path}: no such plan file") from exc
    except IsADirectoryError as exc:
        raise PlanFileError(f"{path}: not a plan file (a directory)") from exc
    except orjson.JSONDecodeError as exc:
        raise PlanFileError(f"{path}: not a plan file (invalid JSON: {exc})") from exc
    if not isinstance(data, dict):
        raise PlanFileError(f"{path}: not a plan file (expected a JSON object)")
    try:
        return plan_from_json(data, items)
    except PlanFileError as exc:
        raise PlanFileError(f"{path}: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(f"{path}: not a plan file ({type(exc).__name__}: {exc})") from exc


ITEMS_LINE = b'  "items": ['


def _read_lines(f: Any) -> tuple[dict[str, Any], Spool[PlanItem]] | None:
    """The plan of a file laid out as :func:`plan_chunks` writes it, one item per line into a spool;
    None for any other layout (then the file is read as one JSON document, which is authoritative:
    this reader accepts only what that parse would read the same way)."""
    head: list[bytes] = []
    for line in f:
        if line.rstrip(b"\r\n") == ITEMS_LINE:
            break
        head.append(line)
    else:
        return None
    text = b"".join(head).rstrip()
    if not text.endswith(b","):
        return None
    try:
        data = orjson.loads(text[:-1] + b"}")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "items" in data:
        return None
    items, last = item_spool(), False  # last: the previous item had no comma after it
    for line in f:
        body = line.strip()
        if body == b"]":
            break
        if last:
            return None  # an item after one without a comma
        last = not body.endswith(b",")
        body = body if last else body[:-1]
        try:
            value = orjson.loads(body)
            if not isinstance(value, dict):
                return None
            item_from_json(value)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        items.append_encoded(body)
    else:
        return None
    if len(items) and not last:
        return None  # a comma after the last item
    if b"".join(f).strip() != b"}":
        return None
    return data, items
