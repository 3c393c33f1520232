"""bulkops: bulk operations for the balena fleet API — preview, apply under an adaptive limiter,
journal, resume, report.

The library API follows the pipeline::

    job = load_job("jobs/debug-logging.toml")
    async with open_client(api_url, token, job.options) as client:
        plan = await make_plan(job, client, api_url=api_url)
        check_apply(plan, api_url=api_url)
        journal = new_run(plan)            # a plan has one run; write_plan(seal_plan(plan, token), path)
                                           # makes a plan file that `bulkops apply` accepts
        summary = await apply_plan(plan, client, journal)

The names are imported on first use, so ``import bulkops`` (and the ``bulkops`` command's first
instant, when Ctrl-C must already be handled) costs nothing; the library is silent unless the caller
configures logging (see :mod:`bulkops.log`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bulkops.apply.engine import RunControl, apply_plan
    from bulkops.apply.runner import load_run, new_run, open_client, run_plan
    from bulkops.apply.summary import summarize
    from bulkops.job.load import load_job, parse_job
    from bulkops.journal.journal import Journal
    from bulkops.model import (
        Action,
        ActionType,
        ChangeKind,
        ItemResult,
        Job,
        Outcome,
        Plan,
        PlanItem,
        Progress,
        RunState,
        RunSummary,
    )
    from bulkops.plan.file import read_plan, write_plan
    from bulkops.plan.guards import check_apply
    from bulkops.plan.make import make_plan
    from bulkops.plan.retry import retry_plan
    from bulkops.plan.seal import seal_plan
    from bulkops.plan.undo import make_undo_plan

_WHERE = {
    "RunControl": "bulkops.apply.engine", "apply_plan": "bulkops.apply.engine",
    "summarize": "bulkops.apply.summary", "load_run": "bulkops.apply.runner",
    "new_run": "bulkops.apply.runner", "open_client": "bulkops.apply.runner",
    "run_plan": "bulkops.apply.runner", "load_job": "bulkops.job.load", "parse_job": "bulkops.job.load",
    "Journal": "bulkops.journal.journal", "read_plan": "bulkops.plan.file",
    "write_plan": "bulkops.plan.file", "check_apply": "bulkops.plan.guards",
    "make_plan": "bulkops.plan.make", "retry_plan": "bulkops.plan.retry",
    "make_undo_plan": "bulkops.plan.undo", "seal_plan": "bulkops.plan.seal",
    **dict.fromkeys(("Action", "ActionType", "ChangeKind", "ItemResult", "Job", "Outcome", "Plan",
                     "PlanItem", "Progress", "RunState", "RunSummary"), "bulkops.model"),
}

__all__ = [
    "Action", "ActionType", "ChangeKind", "ItemResult", "Job", "Journal", "Outcome", "Plan", "PlanItem",
    "Progress", "RunControl", "RunState", "RunSummary", "apply_plan", "check_apply", "load_job", "load_run",
    "make_plan", "make_undo_plan", "new_run", "open_client", "parse_job", "read_plan", "retry_plan",
    "run_plan", "seal_plan", "summarize", "write_plan",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'bulkops' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value
