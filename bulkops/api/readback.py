"""Reading rows back to decide outcomes: after a write, on resume, and when an undo or retry is planned.

The server reports no per-row result, so the current value of every addressed row decides:
equals the after-value (or the row is gone, for a delete) → applied; still the before-value → not
done; anything else → drifted (someone else changed it: skipped, never overwritten).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bulkops.api.urls import URL_BUDGET
from bulkops.model import ChangeKind, PlanItem
from bulkops.odata.ast import Node, and_, eq, in_
from bulkops.v7 import actions

if TYPE_CHECKING:
    from bulkops.api.client import Client

READ_CHUNK = 500  # ids per read-back GET


class State(StrEnum):
    IN_PLACE = "in_place"  # the change is done (after-values, or gone for a delete)
    AS_PLANNED = "as_planned"  # still the before-values: the change is still to do
    DRIFTED = "drifted"  # neither
    GONE = "gone"  # the row no longer exists (for a change: a kind of drift)


def _fields(item: PlanItem) -> tuple[str, ...]:
    return tuple(sorted({*(item.before or {}), *(item.after or {})}))


def classify(item: PlanItem, row: Mapping[str, Any] | None) -> State:
    """Where the row of ``item`` stands now."""
    if row is None:
        if item.kind is ChangeKind.DELETE:
            return State.IN_PLACE
        return State.AS_PLANNED if item.kind is ChangeKind.CREATE else State.GONE
    current = {f: actions.normalize(row.get(f)) for f in _fields(item)}
    if item.after is not None and all(current.get(k) == v for k, v in item.after.items()):
        return State.IN_PLACE
    if item.kind is ChangeKind.CREATE:
        return State.DRIFTED
    if all(current.get(k) == v for k, v in (item.before or {}).items()):
        return State.AS_PLANNED
    return State.DRIFTED


async def read_rows(
    client: Client, resource: str, row_ids: Sequence[int], fields: Sequence[str]
) -> dict[int, Any]:
    """Rows by id, in GETs of up to READ_CHUNK ids."""
    out: dict[int, Any] = {}
    select = ("id", *[f for f in fields if f != "id"])
    for start in range(0, len(row_ids), READ_CHUNK):
        part = list(row_ids[start:start + READ_CHUNK])
        rows = await client.get(resource, filter=in_("id", part), select=select)
        out.update({int(r["id"]): r for r in rows})
    return out


def fitting_slices(client: Client, resource: str, field: str, values: Sequence[Any], *, rest: Node | None,
                   size: int) -> list[Sequence[Any]]:
    """``values`` in order, in slices of up to ``size`` whose ``field in (…) and rest`` fits the URL budget
    (a slice too long is halved until it fits)."""
    out: list[Sequence[Any]] = []
    pending = [values[i:i + size] for i in range(0, len(values), size)]
    while pending:
        part = pending.pop(0)
        if len(part) > 1 and client.url_length(resource, and_(in_(field, part), rest)) > URL_BUDGET:
            half = len(part) // 2
            pending[:0] = [part[:half], part[half:]]
            continue
        out.append(part)
    return out


async def rows_where_in(client: Client, resource: str, field: str, values: Sequence[Any], *,
                        rest: Node | None, select: Sequence[str], size: int) -> list[dict[str, Any]]:
    """Every row of ``resource`` whose ``field`` is one of ``values`` (and matching ``rest``), in GETs
    that fit the URL budget."""
    out: list[dict[str, Any]] = []
    for part in fitting_slices(client, resource, field, values, rest=rest, size=size):
        filt = and_(in_(field, list(part)), rest)
        async for rows in client.pages(resource, filter=filt, select=select, page_size=len(part) + 1):
            out.extend(rows)
    return out


async def read_by_key(client: Client, items: Sequence[PlanItem]) -> dict[int, Any]:
    """Child rows by their natural key, for items of one resource and one key name; keyed by owner id."""
    if not items:
        return {}
    first = items[0]
    owner = next(k for k, v in first.key.items() if isinstance(v, int))
    name_field = next((k, v) for k, v in first.key.items() if k != owner)
    out: dict[int, Any] = {}
    owners = [int(it.key[owner]) for it in items]
    for start in range(0, len(owners), READ_CHUNK):
        part = owners[start:start + READ_CHUNK]
        rows = await client.get(first.resource, filter=and_(eq(*name_field), in_(owner, part)),
                                select=("id", owner, "value"))
        for r in rows:
            owner_id = actions.normalize(r.get(owner))
            if isinstance(owner_id, int):
                out[owner_id] = r
    return out


async def current_rows(
    client: Client, items: Mapping[int, PlanItem]
) -> dict[int, tuple[State, Mapping[str, Any] | None]]:
    """The state of each item (by plan index) and the row it was read from (None when absent), reading
    as few GETs as possible."""
    out: dict[int, tuple[State, Mapping[str, Any] | None]] = {}
    by_resource: dict[tuple[str, bool], list[int]] = {}
    for idx, it in items.items():
        by_resource.setdefault((it.resource, it.kind is ChangeKind.CREATE), []).append(idx)
    for (resource, create), indices in by_resource.items():
        if create:
            groups: dict[tuple[tuple[str, Any], ...], list[int]] = {}
            for i in indices:
                name_part = tuple((k, v) for k, v in sorted(items[i].key.items()) if not isinstance(v, int))
                groups.setdefault(name_part, []).append(i)
            for members in groups.values():
                found = await read_by_key(client, [items[i] for i in members])
                for i in members:
                    owner = next(v for v in items[i].key.values() if isinstance(v, int))
                    row = found.get(owner)
                    out[i] = (classify(items[i], row), row)
            continue
        fields = sorted({f for i in indices for f in _fields(items[i])})
        row_ids = [items[i].row_id for i in indices]
        rows = await read_rows(client, resource, [r for r in row_ids if r is not None], fields)
        for i in indices:
            row_id = items[i].row_id
            row = rows.get(row_id) if row_id is not None else None
            out[i] = (classify(items[i], row), row)
    return out


async def current_states(client: Client, items: Mapping[int, PlanItem]) -> dict[int, State]:
    """The state of each item (by plan index), reading as few GETs as possible."""
    return {i: state for i, (state, _) in (await current_rows(client, items)).items()}


async def matching(
    client: Client, resource: str, ids: Sequence[int], condition: Node | None = None
) -> set[int]:
    """Which of ``ids`` exist (and match ``condition``, when given), in GETs of up to READ_CHUNK ids."""
    out: set[int] = set()
    for start in range(0, len(ids), READ_CHUNK):
        part = list(ids[start:start + READ_CHUNK])
        rows = await client.get(resource, filter=and_(in_("id", part), condition), select=("id",))
        out.update(int(r["id"]) for r in rows)
    return out
