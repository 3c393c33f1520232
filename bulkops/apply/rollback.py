"""The undo of an aborted rollout (``on_abort = "undo"``): the normal undo path, its guards, its own run.

The undo plan is made from the rollout's journal exactly as ``bulkops undo RUN`` makes it (what the
rollout applied, inverted, checked against the server: drifted targets are left alone), checked by the
same guards as any plan (``check_apply``, the fleet allowlist against the server) and applied as a new
run, whose id the rollout records before the first write, so a crash mid-undo resumes that run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from bulkops.apply.engine import RunControl, apply_plan
from bulkops.errors import GuardError
from bulkops.journal.gates import EventKind, GateStore
from bulkops.journal.journal import Journal
from bulkops.journal.runs import PLAN_FILE, run_dir
from bulkops.model import ChangeKind, Outcome, Plan, RunState
from bulkops.plan.allowlist import check_plan_fleets
from bulkops.plan.file import read_plan
from bulkops.plan.guards import check_apply, noun
from bulkops.plan.undo import make_undo_plan

if TYPE_CHECKING:
    from bulkops.api.client import Client

log = structlog.get_logger("bulkops.rollout")


async def undo_rollout(
    plan: Plan, client: Client, journal: Journal, store: GateStore, *, control: RunControl,
    new_run: Callable[[Plan], Journal], now: Callable[[], datetime],
) -> tuple[RunState, str]:
    """Plan, guard and apply the undo of what the rollout in ``journal`` applied (or resume the undo run
    already recorded). Returns the rollout's run state and message."""
    state = store.state()
    head = state.abort_rule or state.message or f"aborted at stage {state.stage}"
    if state.undo_run:
        directory = run_dir(state.undo_run)
        undo_plan, undo_journal = read_plan(directory / PLAN_FILE), Journal.open(directory)
    else:
        try:
            undo_plan = await make_undo_plan(plan, journal, client)
            check_apply(undo_plan, api_url=plan.api_url)
            await check_plan_fleets(undo_plan, client)
        except GuardError as exc:
            store.event(state.stage, EventKind.UNDO, now(), f"refused: {exc}")
            return RunState.ABORTED, (f"{head}; the undo was refused by a guard ({exc}): plan it with "
                                      f"`bulkops undo {journal.run_id}`")
        if all(it.kind is ChangeKind.NOOP for it in undo_plan.items):
            store.event(state.stage, EventKind.UNDO, now(), "nothing to undo")
            return RunState.ABORTED, f"{head}; nothing to undo"
        undo_journal = new_run(undo_plan)
        store.set_undo_run(undo_journal.run_id)
        log.info("bulkops.rollout.undo", run_id=journal.run_id, undo_run=undo_journal.run_id,
                 items=len(undo_plan.items))
    try:
        summary = await apply_plan(undo_plan, client, undo_journal, control=control)
    finally:
        undo_journal.close()
    undo_id = undo_journal.run_id
    if summary.state is RunState.DONE:
        restored = summary.counts.get(Outcome.APPLIED.value, 0)
        drifted = summary.counts.get(Outcome.DRIFTED.value, 0) + summary.counts.get(Outcome.FAILED.value, 0)
        store.event(state.stage, EventKind.UNDO, now(), f"run {undo_id} restored {restored}")
        more = f", {drifted} not restored (see `bulkops report {undo_id}`)" if drifted else ""
        return RunState.ABORTED, (f"{head}; undone by run {undo_id} "
                                  f"({noun(plan.target_resource, restored)} restored{more})")
    if summary.state is RunState.INTERRUPTED:
        return RunState.INTERRUPTED, (f"{head}; its undo (run {undo_id}) was interrupted: "
                                      f"`bulkops resume {journal.run_id}` continues it")
    return RunState.STOPPED, (f"{head}; its undo (run {undo_id}) stopped: {summary.message}; "
                              f"`bulkops resume {journal.run_id}` continues it")
