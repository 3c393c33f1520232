"""``bulkops plan JOB --csv FILE``: every target of a plan as one CSV row, in the preview's terms.

Columns: ``id``, ``uuid``, ``name``, ``fleet``, ``change`` (change, create, delete, noop), ``before``,
``after``, ``online``, ``last_seen``. Values are written as the preview shows them (release versions,
fleet slugs, ``(absent)``), so the file can be reviewed, filtered and its uuid column fed back as a
``uuids_file``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from bulkops.model import ChangeKind, Plan
from bulkops.plan.context import PlanContext
from bulkops.plan.preview import value_text

COLUMNS = ("id", "uuid", "name", "fleet", "change", "before", "after", "online", "last_seen")


def csv_chunks(plan: Plan, ctx: PlanContext, *, rows_per_chunk: int = 1000) -> Iterator[bytes]:
    """The CSV's bytes, a thousand rows at a time."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for n, it in enumerate(plan.items, 1):
        row = ctx.rows.get(it.target_id)
        deleted = it.kind is ChangeKind.DELETE and it.resource == plan.target_resource
        writer.writerow([
            it.target_id, row.uuid if row else (it.label if plan.target_resource == "device" else ""),
            row.name if row else "", row.fleet if row else "", it.kind.value,
            value_text(plan, it.before, ctx) if not deleted else "(exists)",
            value_text(plan, it.after, ctx) if not deleted else "(deleted)",
            "" if row is None or row.online is None else str(row.online).lower(),
            (row.last_seen or "") if row else "",
        ])
        if n % rows_per_chunk == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()
