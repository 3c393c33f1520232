"""Plan again what a run left undone: its failed and unattempted items, re-read from the server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bulkops.api import readback
from bulkops.journal.runs import new_id
from bulkops.log import get_logger
from bulkops.model import ChangeKind, Outcome, Plan
from bulkops.plan.make import warnings_for

if TYPE_CHECKING:
    from bulkops.api.client import Client
    from bulkops.journal.journal import Journal

log = get_logger("bulkops.plan")


async def retry_plan(plan: Plan, journal: Journal, client: Client, *, now: datetime | None = None) -> Plan:
    """A new plan for the items of a run that failed or were not attempted, re-read from the server:
    those still as planned are kept, those now in place become no-ops, drifted ones are left out."""
    now = now or datetime.now(UTC)
    wanted = {j.index: plan.items[j.index] for j in journal.items()
              if j.outcome in (None, Outcome.FAILED, Outcome.NOT_ATTEMPTED) and j.kind is not ChangeKind.NOOP}
    states = await readback.current_states(client, wanted) if wanted else {}
    items = []
    for index, item in sorted(wanted.items()):
        if states[index] is readback.State.AS_PLANNED:
            items.append(item)
        elif states[index] is readback.State.IN_PLACE:
            items.append(replace(item, kind=ChangeKind.NOOP))
    log.info("bulkops.plan.retry", run_id=journal.run_id, retried=len(items),
             dropped=len(wanted) - len(items))
    return replace(plan, created_at=now, items=tuple(items), plan_id=new_id(now),
                   warnings=tuple(warnings_for(plan.action, plan.target_resource, items)))
