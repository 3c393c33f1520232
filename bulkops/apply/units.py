"""Cutting pending plan items into units of work for the apply pool.

* ``CONDITIONAL``: one PATCH or DELETE on ``id in (…) and <field> eq <before> …`` for items that share
  resource, before- and after-values; the before condition makes drift protection atomic.
* ``CHECKED``: items that share resource and after-values but whose before-values are too varied to
  be worth a request each: read first (one GET), then one PATCH/DELETE on the ids still as planned.
* ``CREATE``: one POST per item, through the worker pool.

Batches hold up to ``batch_size`` ids and shrink until the request line fits ``URL_BUDGET`` bytes
(balena answers 431 above about 16 KB).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from bulkops.api.urls import URL_BUDGET
from bulkops.model import ChangeKind, PlanItem
from bulkops.odata.ast import Node, and_, eq, in_

MIN_CONDITIONAL = 10  # items sharing one before-value that get their own conditional batches


class UnitKind(StrEnum):
    CONDITIONAL = "conditional"
    CHECKED = "checked"
    CREATE = "create"


@dataclass(frozen=True, slots=True)
class Unit:
    kind: UnitKind
    change: ChangeKind  # CHANGE, DELETE or CREATE
    resource: str
    indices: tuple[int, ...]
    after: Mapping[str, Any] | None  # the PATCH body (CHANGE), the POST value (CREATE)
    condition: Node | None  # the before-value condition of a CONDITIONAL unit


def _frozen(value: Mapping[str, Any] | None) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def condition(before: Mapping[str, Any] | None) -> Node | None:
    """``f1 eq v1 and f2 eq v2`` for filterable before-values; None when there is nothing to compare
    or a value cannot be compared in a filter (JSON objects, lists)."""
    if not before:
        return None
    parts: list[Node] = []
    for name, raw in sorted(before.items()):
        value = Decimal(str(raw)) if isinstance(raw, float) else raw
        if value is not None and not isinstance(value, str | int | bool | Decimal):
            return None
        parts.append(eq(name, value))
    return and_(*parts)


def _filterable(before: Mapping[str, Any] | None) -> bool:
    return not before or condition(before) is not None


def id_filter(row_ids: Sequence[int], cond: Node | None = None) -> Node:
    return and_(in_("id", row_ids), cond)


def chunks(
    resource: str, rows: Sequence[tuple[int, int]], batch_size: int, cond: Node | None,
    url_length: Callable[[str, Node | None], int],
) -> list[tuple[int, ...]]:
    """Split ``(index, row_id)`` pairs into batches of at most ``batch_size`` that fit the URL budget."""
    out: list[tuple[int, ...]] = []
    start = 0
    while start < len(rows):
        size = min(batch_size, len(rows) - start)
        while size > 1:
            part = rows[start:start + size]
            if url_length(resource, id_filter([r for _, r in part], cond)) <= URL_BUDGET:
                break
            size = max(1, size * 3 // 4)
        out.append(tuple(i for i, _ in rows[start:start + size]))
        start += size
    return out


def make_units(
    items: Sequence[PlanItem], pending: Sequence[int], batch_size: int,
    url_length: Callable[[str, Node | None], int],
) -> list[Unit]:
    """Units for the ``pending`` item indices: batches first (they carry most targets), then creates."""
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
        pooled: list[int] = []
        for members in by_before.values():
            first = items[members[0]]
            big = len(members) >= MIN_CONDITIONAL or (first.kind is ChangeKind.DELETE and not first.before)
            if big and _filterable(first.before):
                cond = condition(first.before)
                rows = [(i, _row(items[i])) for i in members]
                for batch in chunks(resource, rows, batch_size, cond, url_length):
                    units.append(Unit(UnitKind.CONDITIONAL, kind, resource, batch, first.after, cond))
            else:
                pooled.extend(members)
        pooled.sort()
        rows = [(i, _row(items[i])) for i in pooled]
        after = items[pooled[0]].after if pooled else None
        for batch in chunks(resource, rows, batch_size, None, url_length):
            units.append(Unit(UnitKind.CHECKED, kind, resource, batch, after, None))
    return units + creates


def _row(item: PlanItem) -> int:
    if item.row_id is None:
        raise ValueError(f"item for target {item.target_id} has no row id")
    return item.row_id
