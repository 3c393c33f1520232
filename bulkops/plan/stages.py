"""Rollout stages: every target of a rollout plan gets a stable stage, and the preview shows them.

Only targets that send something are staged (no-ops stay in stage 0: nothing is sent to them and no
gate waits for them). Their order decides the cohorts:

* ``random``: by a hash of the job name and the target id, so the same job plans the same cohorts and
  any two targets keep their relative order from one plan to the next;
* ``tag:KEY=VALUE``: the targets carrying that tag first (one GET per 1,000 targets), then the others,
  each group in the random order;
* a field name: ascending by that field (one GET per 1,000 targets), nulls last, ties by id.

Stage sizes come from ``stages`` (cumulative counts or shares, rounded up; a stage that would be
empty is dropped) or from the rate form (one minute of targets per stage at the current rate).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bulkops.api import readback
from bulkops.errors import InputError
from bulkops.job.rollout import stage_text
from bulkops.log import get_logger
from bulkops.model import (
    GATE_DEFAULT,
    GATE_NONE,
    ActionType,
    ChangeKind,
    Job,
    OrderKind,
    Plan,
    PlanItem,
    RateForm,
    Rollout,
)
from bulkops.odata.ast import and_, eq
from bulkops.plan.guards import noun
from bulkops.v7 import actions

if TYPE_CHECKING:
    from bulkops.api.client import Client

__all__ = ["MAX_RATE_STAGES", "assign_stages", "default_gate", "preview_json", "preview_lines", "stage_sizes"]

log = get_logger("bulkops.plan.stages")
MAX_RATE_STAGES = 1000
READ_IDS = 1000  # target ids per GET when the order needs tags or a field
SAMPLE = 3
RELEASE_ACTIONS = frozenset({ActionType.MOVE, ActionType.PIN, ActionType.UNPIN})
STATUS_ACTIONS = frozenset({ActionType.SET_ENV, ActionType.REMOVE_ENV, ActionType.SET_CONFIG,
                            ActionType.REMOVE_CONFIG})


def default_gate(action: ActionType) -> str:
    """What ``gate = "default"`` checks for an action: ``release``, ``status`` or ``none``."""
    if action in RELEASE_ACTIONS:
        return "release"
    if action in STATUS_ACTIONS:
        return "status"
    return "none"


def _rate_sizes(rate: RateForm, n: int) -> list[int]:
    sizes: list[int] = []
    per_minute, since, total = rate.start_per_minute, 0, 0
    top = rate.max_per_minute or n or 1
    while total < n:
        size = min(per_minute, n - total)
        sizes.append(size)
        total += size
        since += size
        if since >= rate.grow_after and rate.growth > 1.0:
            per_minute = min(top, max(per_minute + 1, math.floor(per_minute * rate.growth)))
            since = 0
        if len(sizes) > MAX_RATE_STAGES:
            raise InputError(
                f"the rate form makes more than {MAX_RATE_STAGES} one-minute stages for {n} targets "
                f"(start_per_minute {rate.start_per_minute}, growth {rate.growth:g}): raise "
                "start_per_minute, growth or max_per_minute, or give stages instead")
    return sizes


def stage_sizes(rollout: Rollout, n: int) -> list[int]:
    """The size of each stage for ``n`` staged targets; none is empty and they add up to ``n``."""
    if rollout.rate is not None:
        return _rate_sizes(rollout.rate, n)
    sizes: list[int] = []
    done = 0
    for step in rollout.stages:
        wanted = step.count if step.count is not None else math.ceil((step.share or 0.0) * n - 1e-9)
        cumulative = min(max(wanted, done), n)
        if cumulative > done:
            sizes.append(cumulative - done)
            done = cumulative
    if done < n:  # cannot happen for a validated table (the last stage is 100%); kept for hand-made ones
        sizes.append(n - done)
    return sizes


def rank(job_name: str, target_id: int) -> bytes:
    """The stable random rank of a target in a job's rollout."""
    return hashlib.blake2b(f"{job_name}\x00{target_id}".encode(), digest_size=8).digest()


async def _ordered(job: Job, client: Client, active: list[PlanItem]) -> list[PlanItem]:
    assert job.rollout is not None
    order, res = job.rollout.order, job.target.resource
    by_rank = sorted(active, key=lambda it: rank(job.name, it.target_id))
    ids = sorted(it.target_id for it in active)
    if order.kind is OrderKind.TAG:
        cond = and_(eq("tag_key", order.key), eq("value", order.value))
        rows = await readback.rows_where_in(client, f"{res}_tag", res, ids, rest=cond, select=("id", res),
                                            size=READ_IDS)
        tagged = {actions.normalize(r.get(res)) for r in rows}
        return [it for it in by_rank if it.target_id in tagged] + \
               [it for it in by_rank if it.target_id not in tagged]
    if order.kind is OrderKind.FIELD:
        rows = await readback.rows_where_in(client, res, "id", ids, rest=None, select=("id", order.field),
                                            size=READ_IDS)
        values = {int(r["id"]): actions.normalize(r.get(order.field)) for r in rows}

        def key(it: PlanItem) -> tuple[int, Any, int]:
            value = values.get(it.target_id)
            return (1, "", it.target_id) if value is None else (0, value, it.target_id)

        return sorted(active, key=key)
    return by_rank


async def assign_stages(job: Job, client: Client, items: Sequence[PlanItem]) -> list[PlanItem]:
    """``items`` with their rollout stage set (unchanged when the job has no ``[rollout]``)."""
    if job.rollout is None:
        return list(items)
    active = [it for it in items if it.kind is not ChangeKind.NOOP]
    ordered = await _ordered(job, client, active)
    stage_of: dict[int, int] = {}
    start = 0
    for number, size in enumerate(stage_sizes(job.rollout, len(ordered)), start=1):
        for it in ordered[start:start + size]:
            stage_of[id(it)] = number
        start += size
    log.info("bulkops.plan.staged", stages=max(stage_of.values(), default=0), targets=len(active),
             order=job.rollout.order.kind.value)
    return [replace(it, stage=stage_of[id(it)]) if id(it) in stage_of else it for it in items]


# --- the preview ---------------------------------------------------------------------------------


def _members(plan: Plan) -> dict[int, list[PlanItem]]:
    out: dict[int, list[PlanItem]] = {}
    for it in plan.items:
        if it.stage > 0 and it.kind is not ChangeKind.NOOP:
            out.setdefault(it.stage, []).append(it)
    return dict(sorted(out.items()))


def _order_text(r: Rollout) -> str:
    o = r.order
    if o.kind is OrderKind.TAG:
        return f"tag {o.key}={o.value} first, then random"
    if o.kind is OrderKind.FIELD:
        return f"by {o.field}"
    return "random (seeded by the job name)"


def gate_text(r: Rollout, action: ActionType) -> str:
    """What the gate checks, in words."""
    if r.gate == GATE_NONE:
        return "none"
    if r.gate != GATE_DEFAULT:
        return f"every device matches {r.gate}"
    kind = default_gate(action)
    if kind == "release":
        return "every device online and running the release it should"
    if kind == "status":
        return "every device online and operational"
    return "none (no default gate for this action)"


def _seconds(value: float) -> str:
    if value and value % 3600 == 0:
        return f"{value / 3600:g}h"
    if value and value % 60 == 0:
        return f"{value / 60:g}m"
    return f"{value:g}s"


def _abort_text(r: Rollout) -> str:
    a = r.abort
    return (f"failures > max({a.failures}, {a.failure_rate * 100:g}% of attempted) once {a.min_attempted} "
            "attempted")


def _word(resource: str, n: int) -> str:
    return noun(resource, n).split(" ", 1)[1]


def preview_lines(plan: Plan) -> list[str]:
    """The preview's rollout section: the stages, their sizes and sample members."""
    r = plan.rollout
    if r is None:
        return []
    members = _members(plan)
    if r.rate is not None:
        shape = (f"rate {r.rate.start_per_minute}/min, x{r.rate.growth:g} every {r.rate.grow_after}"
                 + (f", at most {r.rate.max_per_minute}/min" if r.rate.max_per_minute else ""))
    else:
        shape = "stages " + ", ".join(stage_text(s) for s in r.stages)
    lines = [
        f"rollout  {len(members)} stages ({shape}), order {_order_text(r)}",
        f"gate     {gate_text(r, plan.action.type)}; wait {_seconds(r.wait)}, timeout "
        f"{_seconds(r.gate_timeout)}, poll every {_seconds(r.poll_every)}",
        f"abort    when {_abort_text(r)}; then {r.on_abort.value}; approve {r.approve.value}"
        + (f"; stop switch {r.stop_switch}" if r.stop_switch else ""),
    ]
    total = 0
    width = len(str(sum(len(m) for m in members.values())))
    for number, items in members.items():
        total += len(items)
        shown = ", ".join(it.label for it in items[:SAMPLE]) + (", …" if len(items) > SAMPLE else "")
        word = _word(plan.target_resource, len(items))
        lines.append(f"  stage {number:<3} {len(items):>{width}} {word:<7}  to {total:>{width}}  {shown}")
    return lines


def preview_json(plan: Plan) -> dict[str, Any] | None:
    """The rollout part of the JSON preview (None for a plan without a rollout)."""
    r = plan.rollout
    if r is None:
        return None
    total = 0
    stages = []
    for number, items in _members(plan).items():
        total += len(items)
        stages.append({"stage": number, "targets": len(items), "cumulative": total,
                       "sample": [it.label for it in items[:SAMPLE]]})
    return {
        "stages": stages, "order": _order_text(r), "gate": gate_text(r, plan.action.type),
        "wait": r.wait, "gate_timeout": r.gate_timeout, "poll_every": r.poll_every,
        "abort": {"failure_rate": r.abort.failure_rate, "failures": r.abort.failures,
                  "min_attempted": r.abort.min_attempted},
        "approve": r.approve.value, "on_abort": r.on_abort.value, "stop_switch": r.stop_switch,
    }
