"""The ``[rollout]`` table of a job file: stages (or a rate), order, gate, abort rule, approval.

``parse_rollout(where, table, resource, action)`` checks every key before any request: the stage
sizes, the order (a tag or a field of the target resource), the durations, the gate (``default``,
``none`` or an OData filter on devices, parsed and name-checked by :mod:`bulkops.odata`), the abort
rule, and the combinations that cannot work (a gate or an undo after a delete). Every problem is a
``JobFileError`` naming the file, the dotted key and what is accepted.

``rollout_to_json`` / ``rollout_from_json`` carry the validated table in the plan file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from bulkops import v7
from bulkops.job.fields import (
    Where,
    check_keys,
    close_matches,
    describe,
    get_duration,
    get_int,
    get_str,
    get_table,
    parse_duration,
)
from bulkops.job.target import check_filter_text
from bulkops.model import (
    GATE_DEFAULT,
    GATE_NONE,
    AbortRule,
    Action,
    ActionType,
    Approve,
    OnAbort,
    OrderKind,
    RateForm,
    Rollout,
    RolloutOrder,
    StageSize,
)
from bulkops.v7.types import FieldType

__all__ = ["ROLLOUT_KEYS", "parse_rollout", "rollout_from_json", "rollout_to_json", "stage_text"]

ROLLOUT_KEYS = ("stages", "rate", "order", "wait", "gate", "gate_timeout", "poll_every", "abort", "approve",
                "on_abort", "stop_switch")
RATE_KEYS = ("start_per_minute", "growth", "grow_after", "max_per_minute")
ABORT_KEYS = ("failure_rate", "failures", "min_attempted")
DEFAULT = Rollout()  # the defaults of every key
MAX_STAGES = 100
MAX_GATE = 8_000
MAX_GROWTH = 10.0
STAGE_HELP = 'a cumulative count such as "50" or a share such as "10%" (above 0, at most 100%)'
ORDER_HELP = '"random", "tag:KEY=VALUE" (those first, then random) or a field name such as "device_name"'
_SHARE = re.compile(r"(\d{1,3}(?:\.\d{1,6})?)%")
_COUNT = re.compile(r"[1-9]\d{0,8}")
UNORDERABLE = frozenset({FieldType.JSON, FieldType.HASHED})


def stage_text(size: StageSize) -> str:
    """``"50"`` or ``"10%"``: a stage size as the job file writes it."""
    if size.count is not None:
        return str(size.count)
    assert size.share is not None
    return f"{size.share * 100:.6f}".rstrip("0").rstrip(".") + "%"


def _stage(where: Where, key: str, value: object) -> StageSize:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**9:
        return StageSize(count=value)
    if isinstance(value, str):
        if _COUNT.fullmatch(value):
            return StageSize(count=int(value))
        m = _SHARE.fullmatch(value)
        if m and 0 < float(m.group(1)) <= 100:
            return StageSize(share=float(m.group(1)) / 100)
    raise where.error(key, f"expected {STAGE_HELP}, got {describe(value)}")


def _stages(where: Where, raw: object) -> tuple[StageSize, ...]:
    if not isinstance(raw, list):
        raise where.error("stages", f"expected an array of stage sizes, each {STAGE_HELP}, "
                                    f"got {describe(raw)}")
    if not raw:
        raise where.error("stages", 'expected at least one stage; the last one is "100%"')
    if len(raw) > MAX_STAGES:
        raise where.error("stages", f"expected at most {MAX_STAGES} stages, got {len(raw)}")
    sizes = tuple(_stage(where, f"stages[{i}]", v) for i, v in enumerate(raw))
    for i in range(1, len(sizes)):
        now, before = sizes[i], sizes[:i]
        same = [b for b in before if (b.count is None) == (now.count is None)]
        if same and _number(now) <= _number(same[-1]):
            raise where.error(
                f"stages[{i}]", f"stages are cumulative and must grow: {stage_text(now)!r} does not come "
                f"after {stage_text(same[-1])!r}")
    if sizes[-1].share != 1.0:
        raise where.error(f"stages[{len(sizes) - 1}]",
                          f'the last stage must be "100%" (every target), got {stage_text(sizes[-1])!r}')
    return sizes


def _number(size: StageSize) -> float:
    return float(size.count) if size.count is not None else float(size.share or 0.0)


def _rate(where: Where, table: Mapping[str, Any]) -> RateForm:
    check_keys(where, table, RATE_KEYS)
    start = get_int(where, table, "start_per_minute", low=1, high=1_000_000)
    if start is None:
        raise where.error("start_per_minute", f"missing required key 'start_per_minute' {where.place()}")
    growth_raw = table.get("growth", 1.0)
    if isinstance(growth_raw, bool) or not isinstance(growth_raw, int | float) \
            or not 1.0 <= growth_raw <= MAX_GROWTH:
        raise where.error("growth", f"expected a number from 1.0 (a constant rate) to {MAX_GROWTH:g}, "
                                    f"got {describe(growth_raw)}")
    grow_after = get_int(where, table, "grow_after", low=1, high=10**9)
    top = get_int(where, table, "max_per_minute", low=1, high=10**9)
    if top is not None and top < start:
        raise where.error("max_per_minute", f"max_per_minute ({top}) is below start_per_minute ({start})")
    return RateForm(start, float(growth_raw), grow_after or start, top)


def _order(where: Where, raw: str | None, resource: str) -> RolloutOrder:
    if raw is None or raw == "random":
        return RolloutOrder()
    if raw.startswith("tag:"):
        key, eq, value = raw[4:].partition("=")
        if not eq or not key or not value:
            raise where.error("order", f'expected tag:KEY=VALUE such as "tag:ring=canary", '
                                       f"got {describe(raw)}")
        problem = v7.check_tag_key(key, resource_name=f"{resource}_tag")
        if problem or len(key) > v7.TAG_KEY_MAX.get(f"{resource}_tag", 100):
            raise where.error("order", f"invalid tag key {key!r} in {raw!r}: {problem or 'too long'}")
        return RolloutOrder(OrderKind.TAG, key=key, value=value)
    fields = v7.resource(resource).fields
    found = fields.get(raw)
    if found is None:
        hint = close_matches(raw, sorted(fields))
        raise where.error("order", f"expected {ORDER_HELP}, got {describe(raw)}: {resource} has no field "
                                   f"{raw!r}{hint}")
    if found.type in UNORDERABLE:
        raise where.error("order", f"field {raw!r} of {resource} is {found.type.value}: "
                                   "it cannot order targets")
    return RolloutOrder(OrderKind.FIELD, field=raw)


def _wait(where: Where, table: Mapping[str, Any]) -> float:
    """``wait`` may be zero (no settle time); otherwise as any duration."""
    value = table.get("wait")
    if value is None:
        return DEFAULT.wait
    if value == 0 and not isinstance(value, bool):
        return 0.0
    if isinstance(value, str) and (parsed := parse_duration(value)) is not None and not parsed:
        return 0.0
    span = get_duration(where, table, "wait", seconds_ok=True)
    assert span is not None
    return span.total_seconds()


def _seconds(where: Where, table: Mapping[str, Any], name: str, default: float) -> float:
    span = get_duration(where, table, name, seconds_ok=True)
    return default if span is None else span.total_seconds()


def _gate(where: Where, raw: str | None, action: Action) -> str:
    if raw is None or raw == GATE_DEFAULT:
        return GATE_DEFAULT
    if raw == GATE_NONE:
        return GATE_NONE
    if not raw.strip():
        raise where.error("gate", 'expected "default", "none" or an OData filter on device, '
                                  "got an empty string")
    if len(raw) > MAX_GATE:
        raise where.error("gate", f"expected at most {MAX_GATE} characters, got {len(raw)}")
    if action.type is ActionType.DELETE:
        raise where.error("gate", "a gate reads the devices of a stage, which a delete removes: "
                                  'write gate = "none"')
    check_filter_text(where, "gate", raw, "device")
    return raw


def _share(where: Where, value: object) -> float:
    if isinstance(value, str):
        m = _SHARE.fullmatch(value)
        if m and float(m.group(1)) <= 100:
            return float(m.group(1)) / 100
    elif isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise where.error("failure_rate", f'expected a share such as "5%" or 0.05 (0 to 100%), '
                                      f"got {describe(value)}")


def _abort(where: Where, table: Mapping[str, Any] | None) -> AbortRule:
    if table is None:
        return AbortRule()
    check_keys(where, table, ABORT_KEYS)
    rate = _share(where, table["failure_rate"]) if "failure_rate" in table else 0.0
    failures = get_int(where, table, "failures", low=0, high=10**9)
    least = get_int(where, table, "min_attempted", low=1, high=10**9)
    return AbortRule(rate, failures or 0, least or 1)


def _choice(where: Where, table: Mapping[str, Any], name: str, enum: type[Approve] | type[OnAbort]) -> Any:
    raw = get_str(where, table, name, required=False)
    if raw is None:
        return next(iter(enum))
    try:
        return enum(raw)
    except ValueError:
        accepted = ", ".join(repr(e.value) for e in enum)
        raise where.error(name, f"expected one of {accepted}, got {describe(raw)}") from None


def _stop_switch(where: Where, raw: str | None) -> str | None:
    if raw is None:
        return None
    if raw.startswith(("BALENA_", "RESIN_")):
        raise where.error("stop_switch", f"the stop switch is a fleet env var; {raw!r} is a config variable "
                                         "name (BALENA_/RESIN_): choose another name, e.g. \"BULKOPS_STOP\"")
    problem = v7.check_env_var_name(raw) if raw else "names cannot be empty"
    if problem:
        raise where.error("stop_switch", f"invalid env var name {raw!r}: {problem}")
    return raw


def parse_rollout(where: Where, table: Mapping[str, Any], resource: str, action: Action) -> Rollout:
    """The ``[rollout]`` table of a job on ``resource`` doing ``action``."""
    check_keys(where, table, ROLLOUT_KEYS)
    if "stages" in table and "rate" in table:
        raise where.error("rate", "give either stages or rate, not both")
    stages: tuple[StageSize, ...] = ()
    rate = None
    if "stages" in table:
        stages = _stages(where, table["stages"])
    elif "rate" in table:
        rate_table = get_table(where, table, "rate", required=True)
        assert rate_table is not None
        rate = _rate(where.sub("rate"), rate_table)
    else:
        raise where.error(None, 'missing key \'stages\' (cumulative counts or shares, e.g. ["5", "10%", '
                                '"100%"]) or \'rate\' (e.g. { start_per_minute = 5, growth = 2.0 })')
    order = _order(where, get_str(where, table, "order", required=False), resource)
    wait = _wait(where, table)
    gate = _gate(where, get_str(where, table, "gate", required=False), action)
    timeout = _seconds(where, table, "gate_timeout", DEFAULT.gate_timeout)
    poll = _seconds(where, table, "poll_every", DEFAULT.poll_every)
    if poll > timeout:
        raise where.error("poll_every", f"poll_every ({poll:g}s) is longer than gate_timeout ({timeout:g}s)")
    abort = _abort(where.sub("abort"), get_table(where, table, "abort", required=False))
    approve = _choice(where, table, "approve", Approve)
    on_abort = _choice(where, table, "on_abort", OnAbort)
    if on_abort is OnAbort.UNDO and action.type is ActionType.DELETE:
        raise where.error("on_abort", 'deleted devices cannot be restored, so a delete cannot be undone: '
                                      'write on_abort = "stop"')
    switch = _stop_switch(where, get_str(where, table, "stop_switch", required=False))
    return Rollout(stages=stages, rate=rate, order=order, wait=wait, gate=gate, gate_timeout=timeout,
                   poll_every=poll, abort=abort, approve=approve, on_abort=on_abort, stop_switch=switch)


# --- the plan file -------------------------------------------------------------------------------


def rollout_to_json(r: Rollout | None) -> dict[str, Any] | None:
    if r is None:
        return None
    o = r.order
    return {
        "stages": [stage_text(s) for s in r.stages],
        "rate": None if r.rate is None else {
            "start_per_minute": r.rate.start_per_minute, "growth": r.rate.growth,
            "grow_after": r.rate.grow_after, "max_per_minute": r.rate.max_per_minute},
        "order": {"kind": o.kind.value, "key": o.key, "value": o.value, "field": o.field},
        "wait": r.wait, "gate": r.gate, "gate_timeout": r.gate_timeout, "poll_every": r.poll_every,
        "abort": {"failure_rate": r.abort.failure_rate, "failures": r.abort.failures,
                  "min_attempted": r.abort.min_attempted},
        "approve": r.approve.value, "on_abort": r.on_abort.value, "stop_switch": r.stop_switch,
    }


def rollout_from_json(data: Mapping[str, Any] | None) -> Rollout | None:
    """The rollout of a plan file (written by :func:`rollout_to_json`); ``ValueError`` if malformed."""
    if data is None:
        return None
    sizes = []
    for text in data["stages"]:
        m = _SHARE.fullmatch(str(text))
        if m:
            sizes.append(StageSize(share=float(m.group(1)) / 100))
        elif _COUNT.fullmatch(str(text)):
            sizes.append(StageSize(count=int(text)))
        else:
            raise ValueError(f"rollout stage {text!r} is not a count or a share")
    rate = data.get("rate")
    o, a = data["order"], data["abort"]
    for name in ("wait", "gate_timeout", "poll_every"):
        value = float(data[name])
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"rollout {name} {data[name]!r} is not a number of seconds")
    return Rollout(
        stages=tuple(sizes),
        rate=None if rate is None else RateForm(int(rate["start_per_minute"]), float(rate["growth"]),
                                                int(rate["grow_after"]), rate.get("max_per_minute")),
        order=RolloutOrder(OrderKind(o["kind"]), str(o.get("key", "")), str(o.get("value", "")),
                           str(o.get("field", ""))),
        wait=float(data["wait"]), gate=str(data["gate"]), gate_timeout=float(data["gate_timeout"]),
        poll_every=float(data["poll_every"]),
        abort=AbortRule(float(a["failure_rate"]), int(a["failures"]), int(a["min_attempted"])),
        approve=Approve(data["approve"]), on_abort=OnAbort(data["on_abort"]),
        stop_switch=data.get("stop_switch"),
    )
