"""The rollout part of ``bulkops report RUN``: a section per stage, and every decision with its time."""

from __future__ import annotations

from typing import Any

from bulkops.journal.gates import GateStore
from bulkops.journal.journal import Journal
from bulkops.model import Outcome

HEADER = ("stage", "targets", "applied", "failed", "gate", "passed", "failed", "polls", "started", "ended")


def report_json(journal: Journal) -> dict[str, Any] | None:
    """The ``rollout`` member of the JSON report (None for a run that is not a rollout)."""
    store = GateStore.existing(journal.path)
    if store is None:
        return None
    try:
        state = store.state()
        counts = store.outcome_counts()
        failures = store.gate_failures()
        labels = {j.index: j.label for j in journal.items() if j.index in failures}
        return {
            "stage": state.stage, "stages": state.stages, "phase": state.phase.value,
            "approved_through": state.approved, "message": state.message, "abort_rule": state.abort_rule,
            "aborted_at": state.abort_at, "undo_run": state.undo_run,
            "stage_results": [
                {"stage": s.stage, "targets": s.targets, "outcomes": counts.get(s.stage, {}),
                 "started_at": s.started_at, "written_at": s.written_at, "gate_started_at": s.gate_started_at,
                 "ended_at": s.ended_at, "gate": s.verdict.value if s.verdict else None,
                 "gate_passed": s.passed, "gate_failed": s.failed, "polls": s.polls}
                for s in store.stages()
            ],
            "decisions": [
                {"at": e.at, "stage": e.stage, "kind": e.kind.value,
                 "verdict": e.verdict.value if e.verdict else None, "passed": e.passed, "failed": e.failed,
                 "pending": e.pending, "detail": e.detail}
                for e in store.events()
            ],
            "gate_failures": [{"index": i, "label": labels.get(i, ""), "reason": r}
                              for i, r in failures.items()],
        }
    finally:
        store.close()


def summary_lines(journal: Journal) -> list[str]:
    """The per-stage section of the text report (nothing for a run that is not a rollout)."""
    data = report_json(journal)
    if data is None:
        return []
    lines = [f"rollout  stage {data['stage']} of {data['stages']}: {data['phase']}"
             + (f" ({data['message']})" if data["message"] else "")]
    rows = [HEADER]
    for s in data["stage_results"]:
        outcomes = s["outcomes"]
        rows.append((str(s["stage"]), str(s["targets"]), str(outcomes.get(Outcome.APPLIED.value, 0)),
                     str(outcomes.get(Outcome.FAILED.value, 0)), s["gate"] or "-",
                     "-" if s["gate_passed"] is None else str(s["gate_passed"]),
                     "-" if s["gate_failed"] is None else str(s["gate_failed"]), str(s["polls"]),
                     s["started_at"] or "-", s["ended_at"] or "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(HEADER))]
    lines.extend("  " + "  ".join(cell.rjust(w) if c in (1, 2, 3, 5, 6, 7) else cell.ljust(w)
                                  for c, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                 for r in rows)
    if data["gate_failures"]:
        lines.append("gate failures")
        lines.extend(f"  {f['label']}: {f['reason']}" for f in data["gate_failures"][:10])
        if len(data["gate_failures"]) > 10:
            lines.append(f"  … and {len(data['gate_failures']) - 10} more (see --json)")
    return lines
