"""``bulkops approve RUN`` and what the other commands say and return for a staged rollout.

Exit codes of a rollout run: 6 awaiting approval (``bulkops approve RUN``), 7 aborted by its abort rule
(undone first with ``on_abort = "undo"``), 4 paused by an inconclusive gate or stopped by the stop
switch (``bulkops resume RUN``), 1 done with targets that failed their gate (tolerated by the abort
rule), 0 done.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bulkops.errors import ExitCode, InputError, JournalError
from bulkops.journal import runs
from bulkops.journal.gates import GateStore, Phase
from bulkops.journal.journal import Journal
from bulkops.model import RunState, RunSummary

Handler = Callable[[argparse.Namespace], int]


def register(sub: Any, common: argparse.ArgumentParser, *, resume: Handler) -> None:
    """Add ``approve`` to the ``bulkops`` parser; after approving it continues the run like ``resume``."""
    p = sub.add_parser("approve", parents=[common],
                       help="approve the next stage of a rollout awaiting approval, and start it")
    p.add_argument("run")

    def handler(args: argparse.Namespace) -> int:
        return cmd_approve(args, resume=resume)

    p.set_defaults(handler=handler)


def _awaiting(journal: Journal) -> tuple[int, int] | None:
    """(stage passed, stages) when the run's rollout awaits approval, else None."""
    store = GateStore.existing(journal.path)
    if store is None:
        return None
    try:
        state = store.state()
    finally:
        store.close()
    if state.phase is Phase.APPROVAL and state.approved < state.stage:
        return state.stage, state.stages
    return None


def cmd_approve(args: argparse.Namespace, *, resume: Handler) -> int:
    directory = runs.run_dir(args.run)
    journal = Journal.open(directory)
    try:
        if GateStore.existing(journal.path) is None:
            raise InputError(f"run {directory.name} is not a staged rollout: there is nothing to approve")
        waiting = _awaiting(journal)
        if waiting is None:
            state = journal.info().state
            raise InputError(f"run {directory.name} is not awaiting approval (its state is {state})")
        if journal.in_use():
            raise InputError(f"run {directory.name} is being applied by another bulkops process")
        store = GateStore.open(journal.path)
        try:
            store.approve(waiting[0], datetime.now(UTC))
        finally:
            store.close()
    finally:
        journal.close()
    print(f"bulkops: run {directory.name}: stage {waiting[0]} of {waiting[1]} approved; the rollout goes on",
          file=sys.stderr)
    return resume(args)


def before_resume(directory: Any) -> int | None:
    """For ``bulkops resume`` of a rollout awaiting approval: say so and send nothing (exit 6)."""
    journal = Journal.open(directory)
    try:
        waiting = _awaiting(journal)
    finally:
        journal.close()
    if waiting is None:
        return None
    print(f"bulkops: run {journal.run_id} is awaiting approval after stage {waiting[0]} of {waiting[1]}: "
          f"`bulkops approve {journal.run_id}` starts the next stage", file=sys.stderr)
    return int(ExitCode.AWAITING_APPROVAL)


def exit_code(summary: RunSummary) -> ExitCode | None:
    """The exit code of a rollout run's summary, or None when it is not a rollout's to decide."""
    if summary.state is RunState.AWAITING_APPROVAL:
        return ExitCode.AWAITING_APPROVAL
    if summary.state is RunState.ABORTED:
        return ExitCode.ROLLOUT_ABORTED
    if summary.state is RunState.PAUSED:
        return ExitCode.RUN_FAILED
    if summary.state is RunState.DONE:
        try:
            journal = Journal.open(runs.run_dir(summary.run_id))
        except JournalError:  # no journal to read: not a rollout's to decide
            return None
        try:
            store = GateStore.existing(journal.path)
            if store is not None:
                failed = len(store.gate_failures())
                store.close()
                if failed:
                    return ExitCode.SOME_FAILED
        finally:
            journal.close()
    return None


def after_run(summary: RunSummary) -> None:
    """The line that tells what to do next after a rollout stopped for a reason of its own."""
    if summary.state in {RunState.AWAITING_APPROVAL, RunState.PAUSED, RunState.ABORTED}:
        print(f"bulkops: {summary.message}", file=sys.stderr)
