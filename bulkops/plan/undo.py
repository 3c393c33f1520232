"""Run → undo plan: the journal's applied items inverted, checked against the server's current state.

The undo plan goes through the same preview, guards and apply as any plan. What cannot be undone
(devices or fleets the run deleted) is counted and named in its warnings; items whose target was deleted
since are kept, marked skipped (nothing is sent for them); items someone changed since the run are left
alone (drifted) and named too; items already back to their old value are no-ops. Its writes carry their
before-values (the run's after-values), not the job's selection: the run may have moved targets out of it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from bulkops.api import readback
from bulkops.api.readback import State
from bulkops.errors import InputError
from bulkops.journal.runs import new_id
from bulkops.model import ActionType, ChangeKind, Expect, Outcome, Plan, PlanItem
from bulkops.plan import diff
from bulkops.plan.guards import noun
from bulkops.plan.owners import gone_warning, split_gone

if TYPE_CHECKING:
    from bulkops.api.client import Client
    from bulkops.journal.journal import Journal

log = structlog.get_logger("bulkops.undo")
RESTARTS = {ActionType.SET_ENV, ActionType.REMOVE_ENV, ActionType.SET_CONFIG, ActionType.REMOVE_CONFIG}


async def _locate_created(client: Client, items: dict[int, PlanItem]) -> tuple[dict[int, PlanItem], set[int]]:
    """Row ids of rows the run created (undone by deleting them), found by natural key. A row gone
    already makes a no-op; a row whose value changed since is drifted (its index in the set)."""
    located: dict[int, PlanItem] = {}
    drifted: set[int] = set()
    found = await readback.read_by_key(client, list(items.values()))
    for index, item in items.items():
        owner = next(v for v in item.key.values() if isinstance(v, int))
        row = found.get(owner)
        if row is None:
            located[index] = replace(item, kind=ChangeKind.NOOP)
        elif row.get("value") != (item.before or {}).get("value"):
            drifted.add(index)
        else:
            located[index] = replace(item, row_id=int(row["id"]))
    return located, drifted


async def make_undo_plan(
    plan: Plan, journal: Journal, client: Client, *, now: datetime | None = None
) -> Plan:
    """The plan that restores the before-values of every item the run applied."""
    if plan.undo_of:
        raise InputError(f"run {journal.run_id} is itself an undo; make a new job to change things again")
    now = now or datetime.now(UTC)
    inverses: dict[int, PlanItem] = {}
    skipped = 0
    for j in journal.items():
        if j.outcome is not Outcome.APPLIED:
            continue
        inverse = diff.invert(plan.items[j.index])
        if inverse is None:
            skipped += 1
        else:
            inverses[j.index] = inverse
    inverses, gone = await split_gone(client, plan.target_resource, inverses)
    to_locate = {i: it for i, it in inverses.items() if it.kind is ChangeKind.DELETE and it.row_id is None}
    drifted: set[int] = set()
    if to_locate:
        located, drifted = await _locate_created(client, to_locate)
        inverses.update(located)
        for index in drifted:
            del inverses[index]
    check = {i: it for i, it in inverses.items() if it.kind is not ChangeKind.NOOP}
    states = await readback.current_states(client, check) if check else {}
    kept: dict[int, PlanItem] = dict(gone)
    for index, item in inverses.items():
        state = states.get(index)
        if state is State.AS_PLANNED:
            kept[index] = item
        elif state is State.IN_PLACE or item.kind is ChangeKind.NOOP:
            kept[index] = replace(item, kind=ChangeKind.NOOP)
        else:
            drifted.add(index)
    items = [item for _, item in sorted(kept.items())]
    warnings = gone_warning(plan.target_resource, len(gone)) + _warnings(plan, items, skipped, len(drifted))
    log.info("bulkops.undo.planned", run_id=journal.run_id, items=len(items), skipped=skipped + len(gone),
             drifted=len(drifted))
    return replace(
        plan, job_name=f"undo-{plan.job_name}", job_path="", job_fingerprint="", created_at=now,
        compiled_filter=f"the targets run {journal.run_id} applied", precondition="", items=tuple(items),
        expect=Expect(max=len(items)),  # an undo never grows beyond what it was planned with
        warnings=tuple(warnings), irreversible=False, plan_id=new_id(now), undo_of=journal.run_id,
        rollout=None,  # an undo restores everything at once, never in stages
    )


def _warnings(plan: Plan, items: list[PlanItem], skipped: int, drifted: int) -> list[str]:
    res, kind = plan.target_resource, plan.action.type
    active = sum(1 for it in items if it.kind is not ChangeKind.NOOP)
    out: list[str] = []
    if skipped:
        out.append(f"{noun(res, skipped)} deleted by the run cannot be restored: skipped")
    if drifted:
        out.append(f"{noun(res, drifted)} changed since the run: left as they are (drifted)")
    if active and kind in RESTARTS:
        out.append(f"{noun(res, active)} will restart services" if res == "device"
                   else f"every device of {noun(res, active)} will restart services")
    if active and kind is ActionType.MOVE:
        moving = [it for it in items if it.kind is not ChangeKind.NOOP]
        pins = all("is_pinned_on__release" in (it.after or {}) for it in moving)
        out.append(f"{noun('device', active)} will move back to their previous fleet, "
                   + ("with their release pins restored" if pins
                      else "pins stay cleared (the run's plan did not record them)"))
    return out
