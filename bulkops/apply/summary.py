"""A run's summary, read from its journal: counts per outcome, per-target results, requests and 429s."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bulkops.journal.journal import Journal
from bulkops.model import ItemResult, Outcome, RunState, RunSummary


def summarize(journal: Journal, *, client_stats: Any = None, elapsed: float = 0.0,
              state: RunState | None = None, message: str | None = None) -> RunSummary:
    results = tuple(
        ItemResult(j.index, j.target_id, j.label, j.outcome or Outcome.NOT_ATTEMPTED, j.status, j.attempts,
                   j.error)
        for j in journal.items()
    )
    counts: Mapping[str, int] = journal.counts()
    return RunSummary(
        run_id=journal.run_id, state=state or journal.state(), counts=counts, results=results,
        requests=getattr(client_stats, "requests", 0), throttled=getattr(client_stats, "throttled", 0),
        elapsed=elapsed, message=journal.message() if message is None else message,
    )
