"""A run's summary, read from its journal: counts per outcome, per-target results, requests and 429s.

The per-target results go from the journal into a :class:`~bulkops.spool.Spool`, one at a time: a
summary of a million-target run holds their offsets in memory, not the results themselves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bulkops.journal.journal import Journal
from bulkops.model import ItemResult, Outcome, RunState, RunSummary
from bulkops.spool import Spool


def _encode(r: ItemResult) -> bytes:
    return orjson.dumps([r.index, r.target_id, r.label, r.outcome.value, r.status, r.attempts, r.error])


def _decode(data: bytes) -> ItemResult:
    index, target_id, label, outcome, status, attempts, error = orjson.loads(data)
    return ItemResult(index, target_id, label, Outcome(outcome), status, attempts, error)


def summarize(journal: Journal, *, client_stats: Any = None, elapsed: float = 0.0,
              state: RunState | None = None, message: str | None = None) -> RunSummary:
    results = Spool(_encode, _decode, (
        ItemResult(j.index, j.target_id, j.label, j.outcome or Outcome.NOT_ATTEMPTED, j.status, j.attempts,
                   j.error)
        for j in journal.iter_items()
    ))
    counts: Mapping[str, int] = journal.counts()
    return RunSummary(
        run_id=journal.run_id, state=state or journal.state(), counts=counts, results=results,
        requests=getattr(client_stats, "requests", 0), throttled=getattr(client_stats, "throttled", 0),
        elapsed=elapsed, message=journal.message() if message is None else message,
    )
