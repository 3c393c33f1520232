"""Plan again what a run left undone: its failed and unattempted items, re-read from the server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from bulkops.api import readback
from bulkops.journal.runs import new_id
from bulkops.model import ChangeKind, Outcome, Plan, PlanItem
from bulkops.plan.make import warnings_for
from bulkops.plan.owners import gone_warning, split_gone

if TYPE_CHECKING:
    from bulkops.api.client import Client
    from bulkops.journal.journal import Journal

log = structlog.get_logger("bulkops.plan")


async def retry_plan(plan: Plan, journal: Journal, client: Client, *, now: datetime | None = None) -> Plan:
    """A new plan for the items of a run that failed or were not attempted, re-read from the server:
    those still as planned are kept, those now in place become no-ops, drifted ones are left out, and
    those whose target was deleted since are kept as skipped (nothing is sent for them)."""
    now = now or datetime.now(UTC)
    wanted = {j.index: plan.items[j.index] for j in journal.items()
              if j.outcome in (None, Outcome.FAILED, Outcome.NOT_ATTEMPTED) and j.kind is not ChangeKind.NOOP}
    present, gone = await split_gone(client, plan.target_resource, wanted)
    states = await readback.current_states(client, present) if present else {}
    kept: dict[int, PlanItem] = dict(gone)
    for index, item in present.items():
        if states[index] is readback.State.AS_PLANNED:
            kept[index] = item
        elif states[index] is readback.State.IN_PLACE:
            kept[index] = replace(item, kind=ChangeKind.NOOP)
    items = [item for _, item in sorted(kept.items())]
    log.info("bulkops.plan.retry", run_id=journal.run_id, retried=len(items) - len(gone), skipped=len(gone),
             dropped=len(wanted) - len(items))
    warnings = [*gone_warning(plan.target_resource, len(gone)),
                *warnings_for(plan.action, plan.target_resource, items)]
    return replace(plan, created_at=now, items=tuple(items), plan_id=new_id(now), warnings=tuple(warnings))
