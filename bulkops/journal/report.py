"""Per-target results of a run, from its journal: a summary, CSV and JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from bulkops.journal import rollout_report
from bulkops.journal.journal import Journal, JournalItem
from bulkops.journal.output import write_output
from bulkops.model import Outcome

COLUMNS = ("index", "id", "label", "kind", "resource", "row_id", "before", "after", "outcome", "status",
           "attempts", "error")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


def rows(journal: Journal) -> Iterator[dict[str, Any]]:
    """One row per plan item, read from the journal as they are used; an item without an outcome is
    ``not_attempted``."""
    return (_row(j) for j in journal.iter_items())


def _row(j: JournalItem) -> dict[str, Any]:
    return {
        "index": j.index, "id": j.target_id, "label": j.label, "kind": j.kind.value, "resource": j.resource,
        "row_id": j.row_id, "before": j.before, "after": j.after,
        "outcome": (j.outcome or Outcome.NOT_ATTEMPTED).value, "status": j.status, "attempts": j.attempts,
        "error": j.error,
    }


def report_json(journal: Journal) -> dict[str, Any]:
    """The whole report as one value (:func:`json_chunks` writes the same document a piece at a time)."""
    return _report_head(journal) | {"items": list(rows(journal)),
                                    "rollout": rollout_report.report_json(journal)}


def _report_head(journal: Journal) -> dict[str, Any]:
    info = journal.info()
    return {
        "run_id": info.run_id, "state": info.state, "job": info.job_name, "action": info.action,
        "created_at": info.created_at, "updated_at": info.updated_at, "message": journal.message(),
        "total": info.total, "counts": info.counts, "requests_journaled": journal.attempt_count(),
    }


def json_chunks(journal: Journal) -> Iterator[bytes]:
    """The JSON report (:func:`report_json`, indented) in pieces, one item per line."""
    head = orjson.dumps(_report_head(journal), option=orjson.OPT_INDENT_2)
    yield head[: head.rindex(b"}")].rstrip() + b',\n  "items": ['
    for n, row in enumerate(rows(journal)):
        yield (b",\n    " if n else b"\n    ") + orjson.dumps(row)
    rollout = orjson.dumps(rollout_report.report_json(journal), option=orjson.OPT_INDENT_2)
    yield b"\n  ],\n  \"rollout\": " + rollout.replace(b"\n", b"\n  ") + b"\n}\n"


def write_json(journal: Journal, path: str | Path) -> None:
    write_output(path, json_chunks(journal), "the JSON report")


def csv_chunks(journal: Journal) -> Iterator[bytes]:
    """The CSV report in pieces of a few hundred rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for n, r in enumerate(rows(journal), 1):
        writer.writerow([_cell(r[c]) for c in COLUMNS])
        if n % 500 == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


def csv_text(journal: Journal) -> str:
    return b"".join(csv_chunks(journal)).decode()


def write_csv(journal: Journal, path: str | Path) -> None:
    write_output(path, csv_chunks(journal), "the CSV report")


def summary_text(journal: Journal) -> str:
    info = journal.info()
    counts = info.counts
    order = [o.value for o in (Outcome.APPLIED, Outcome.NOOP, Outcome.DRIFTED, Outcome.FAILED,
                               Outcome.NOT_ATTEMPTED, Outcome.SKIPPED)]
    lines = [
        f"run      {info.run_id}   job {info.job_name}   action {info.action}",
        f"state    {info.state}" + (f" ({journal.message()})" if journal.message() else ""),
        f"targets  {info.total}",
        "outcomes " + "   ".join(f"{k} {counts.get(k, 0)}" for k in order),
        f"writes   {_plural(journal.attempt_count(), 'write request')} journaled",
        *rollout_report.summary_lines(journal),
    ]
    bad = counts.get(Outcome.FAILED.value, 0) + counts.get(Outcome.DRIFTED.value, 0)
    if bad:
        lines.append("not applied")
        for j in islice(journal.iter_items(outcomes=(Outcome.FAILED, Outcome.DRIFTED)), 10):
            status = f" HTTP {j.status}" if j.status else ""
            lines.append(f"  {j.outcome.value if j.outcome else ''} {j.label}{status}: {j.error or ''}")
        if bad > 10:
            lines.append(f"  … and {bad - 10} more (see --csv / --json)")
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
