"""Cutting pending plan items into units of work for the apply pool.

Every PATCH and DELETE is conditional (:mod:`bulkops.apply.conditions`): its filter pins the ids and
carries the planned before-values and the job's target selection, so the server itself leaves alone a
row changed since the plan. There is no read before a write.

* ``CONDITIONAL``: items sharing resource, before- and after-values (at least ``MIN_CONDITIONAL`` of
  them, or a delete with no before-values): ``id in (…) and <before> and <selection>``.
* ``GROUPED``: the items whose before-values are shared by fewer: one write for several before-values,
  ``((id in (1,3) and value eq 'a') or (id in (2) and value eq 'b')) and <selection>``.
* ``CREATE``: one POST per item, through the worker pool (balena has no conditional create).
* ``UNCOMPARABLE``: items whose before-value no filter can compare (a JSON object): never sent.

Batches hold up to ``batch_size`` ids and shrink until the request line fits ``URL_BUDGET`` bytes
(balena answers 431 above about 16 KB).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from bulkops.api.urls import URL_BUDGET
from bulkops.apply.conditions import Selection, Uncomparable, before_condition, write_filter
from bulkops.errors import PlanFileError
from bulkops.model import ChangeKind, PlanItem
from bulkops.odata.ast import Node

MIN_CONDITIONAL = 10  # items sharing one before-value that get batches of their own
MAX_TERMS = 100  # before-value terms OR'd in one write (balena was seen to take 150)
UrlLength = Callable[[str, Node | None], int]


class UnitKind(StrEnum):
    CONDITIONAL = "conditional"
    GROUPED = "grouped"
    CREATE = "create"
    UNCOMPARABLE = "uncomparable"


@dataclass(frozen=True, slots=True)
class Unit:
    kind: UnitKind
    change: ChangeKind  # CHANGE, DELETE or CREATE
    resource: str
    indices: tuple[int, ...]
    after: Mapping[str, Any] | None  # the PATCH body (CHANGE), the POST value (CREATE)
    filter: Node | None  # the write's whole $filter (CONDITIONAL, GROUPED)


def _frozen(value: Mapping[str, Any] | None) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def chunks(
    resource: str, rows: Sequence[tuple[int, int, Node | None]], batch_size: int, guard: Node | None,
    url_length: UrlLength,
) -> list[tuple[tuple[int, ...], Node]]:
    """Split ``(index, row_id, before condition)`` triples (those of one before-value next to each other)
    into batches of at most ``batch_size`` and ``MAX_TERMS`` before-values whose write filter fits the
    URL budget."""
    out: list[tuple[tuple[int, ...], Node]] = []
    start = 0
    while start < len(rows):
        size = _within_terms(rows, start, min(batch_size, len(rows) - start))
        while True:
            filt = _filter(rows[start:start + size], guard)
            if size == 1 or url_length(resource, filt) <= URL_BUDGET:
                break
            size = max(1, size * 3 // 4)
        out.append((tuple(i for i, _, _ in rows[start:start + size]), filt))
        start += size
    return out


def _within_terms(rows: Sequence[tuple[int, int, Node | None]], start: int, limit: int) -> int:
    """How many rows from ``start`` (``limit`` at most) hold at most MAX_TERMS before-values."""
    terms, n = 0, 0
    for _, _, cond in rows[start:start + limit]:
        if n == 0 or cond != rows[start + n - 1][2]:
            terms += 1
            if terms > MAX_TERMS:
                break
        n += 1
    return n


def _filter(rows: Sequence[tuple[int, int, Node | None]], guard: Node | None) -> Node:
    groups: list[tuple[list[int], Node | None]] = []
    for _, row_id, cond in rows:
        if groups and groups[-1][1] == cond:
            groups[-1][0].append(row_id)
        else:
            groups.append(([row_id], cond))
    return write_filter(groups, guard)


def make_units(
    items: Sequence[PlanItem], pending: Sequence[int], batch_size: int, url_length: UrlLength, *,
    selection: Selection | None = None,
) -> list[Unit]:
    """Units for the ``pending`` item indices: batches first (they carry most targets), then creates.
    ``selection``: the plan's target selection, carried by every write."""
    groups: dict[tuple[ChangeKind, str, bytes], dict[bytes, list[int]]] = {}
    creates: list[Unit] = []
    for i in pending:
        it = items[i]
        if it.kind is ChangeKind.CREATE:
            creates.append(Unit(UnitKind.CREATE, ChangeKind.CREATE, it.resource, (i,), it.after, None))
        elif it.kind in (ChangeKind.CHANGE, ChangeKind.DELETE):
            by_before = groups.setdefault((it.kind, it.resource, _frozen(it.after)), {})
            by_before.setdefault(_frozen(it.before), []).append(i)
    units: list[Unit] = []
    for (kind, resource, _), by_before in groups.items():
        guard = selection.guard(resource) if selection is not None else None
        after = items[next(iter(by_before.values()))[0]].after
        pooled: list[tuple[int, int, Node | None]] = []
        for members in by_before.values():
            first = items[members[0]]
            try:
                cond = before_condition(resource, first.before)
            except Uncomparable:
                units.append(Unit(UnitKind.UNCOMPARABLE, kind, resource, tuple(members), after, None))
                continue
            rows = [(i, _row(items[i], i), cond) for i in members]
            if len(members) >= MIN_CONDITIONAL or not first.before:
                for batch, filt in chunks(resource, rows, batch_size, guard, url_length):
                    units.append(Unit(UnitKind.CONDITIONAL, kind, resource, batch, after, filt))
            else:
                pooled.extend(rows)
        for batch, filt in chunks(resource, pooled, batch_size, guard, url_length):
            units.append(Unit(UnitKind.GROUPED, kind, resource, batch, after, filt))
    return units + creates


def _row(item: PlanItem, index: int) -> int:
    if item.row_id is None:
        raise PlanFileError(f"plan item {index} (target {item.target_id}) is a {item.kind.value} without a "
                            "row id: the plan file was edited or is corrupt; make a new plan")
    return item.row_id
