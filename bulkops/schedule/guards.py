"""The guards of an unattended run, on top of the ones every apply passes (``check_apply``, the
allowlist read from the server):

* a plan that deletes rows needs ``expect.max`` — nobody is there to confirm the count;
* a plan that changes many more targets than the job's last run (``grow_limit``: more than
  ``max(factor × last, last + add)``, by default 2× or +50) is not applied: the slot is journaled as
  "needs approval" and a person approves it with ``bulkops run JOB --yes --unattended --slot SLOT
  --approve``.

A refusal stops that run only; the scheduler goes on with the others.
"""

from __future__ import annotations

import math

from bulkops.errors import GuardError
from bulkops.model import ChangeKind, GrowLimit, Plan
from bulkops.plan.guards import noun
from bulkops.schedule.store import SlotRecord


class NeedsApprovalError(GuardError):
    """The plan grew past the job's ``grow_limit``: it waits for a person to approve it."""


def active(plan: Plan) -> int:
    """Items the run would send something for (every kind but no-op)."""
    return sum(1 for it in plan.items if it.kind is not ChangeKind.NOOP)


def grow_bound(last: int, grow: GrowLimit) -> int:
    """The most targets a run may change after a run that changed ``last``."""
    return max(math.floor(last * grow.factor), last + grow.add)


def check_unattended(plan: Plan, *, baseline: SlotRecord | None, grow: GrowLimit, approve: bool,
                     approve_hint: str) -> None:
    """Refuse what an unattended run must not apply; ``approve`` waives ``grow_limit`` (only)."""
    n = active(plan)
    if plan.expect.max is None and any(it.kind is ChangeKind.DELETE for it in plan.items):
        raise GuardError(
            f"the plan removes rows of {noun(plan.target_resource, n)} with nobody to confirm it: "
            "set expect.max in the job file to bound how many one run may remove")
    if approve or baseline is None or baseline.active is None:
        return
    bound = grow_bound(baseline.active, grow)
    if n > bound:
        raise NeedsApprovalError(
            f"the plan changes {noun(plan.target_resource, n)}, the job's last run {baseline.active} "
            f"(slot {baseline.slot}); grow_limit allows {bound} (the larger of {grow.factor:g} × "
            f"{baseline.active} and {baseline.active} + {grow.add}): nothing was applied; after checking "
            f"the plan (`bulkops plan {plan.job_path}`), approve it with `{approve_hint}`")
