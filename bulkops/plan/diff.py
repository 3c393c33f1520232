"""The per-target diff.

The diff is pure: it takes rows as the API returned them and gives one :class:`PlanItem` per target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bulkops.model import Action, ActionType, ChangeKind, JSONValue, PlanItem
from bulkops.v7.actions import (
    LABEL_FIELD,
    REMOVALS,
    child_resource,
    fleet_of,
    key_field,
    key_value,
    normalize,
)


@dataclass(frozen=True, slots=True)
class Resolved:
    """Names resolved to ids before planning."""

    fleet_ids: Mapping[str, int] = field(default_factory=dict)  # slug -> id of the job's fleets
    move_to: int | None = None  # destination fleet id
    releases: Mapping[int, int] = field(default_factory=dict)  # fleet id -> release id to pin


def wanted(
    action: Action, target_resource: str, fleet_id: int | None, resolved: Resolved
) -> dict[str, JSONValue]:
    """The after-values of a row action for a target in fleet ``fleet_id``."""
    t = action.type
    if t is ActionType.PATCH:
        return dict(action.fields)
    if t is ActionType.MOVE:  # balena clears the pin of a device that changes fleet: said explicitly
        return {"belongs_to__application": resolved.move_to, "is_pinned_on__release": None}
    if t is ActionType.PIN:
        release = resolved.releases.get(fleet_id) if fleet_id is not None else None
        if target_resource == "application":
            return {"should_be_running__release": release, "should_track_latest_release": False}
        return {"is_pinned_on__release": release}
    if t is ActionType.UNPIN:
        if target_resource == "application":
            return {"should_track_latest_release": True}
        return {"is_pinned_on__release": None}
    raise ValueError(f"{t} is not a row action")


def diff_row(
    action: Action, target_resource: str, row: Mapping[str, Any], resolved: Resolved
) -> PlanItem:
    """The item for a row action on one target row (a device or a fleet)."""
    target_id = int(row["id"])
    label = str(row.get(LABEL_FIELD[target_resource]) or target_id)
    if action.type is ActionType.DELETE:
        return PlanItem(target_id, label, ChangeKind.DELETE, target_resource, target_id, {}, None,
                        {"id": target_id})
    after = wanted(action, target_resource, fleet_of(row, target_resource), resolved)
    before = {f: normalize(row.get(f)) for f in after}
    if action.type is ActionType.MOVE and before["belongs_to__application"] == resolved.move_to:
        after = before  # in the destination already: its pin stays as it is
    kind = ChangeKind.NOOP if before == after else ChangeKind.CHANGE
    return PlanItem(target_id, label, kind, target_resource, target_id, before, after, {"id": target_id})


def diff_child(
    action: Action, target_resource: str, target: Mapping[str, Any], current: Mapping[str, Any] | None
) -> PlanItem:
    """The item for a child action on one target, given its current child row (or None if absent)."""
    target_id = int(target["id"])
    label = str(target.get(LABEL_FIELD[target_resource]) or target_id)
    resource = child_resource(action, target_resource)
    key = {target_resource: target_id, key_field(action): key_value(action)}
    row_id = int(current["id"]) if current is not None else None
    before = {"value": current.get("value")} if current is not None else None
    if action.type in REMOVALS:
        kind = ChangeKind.NOOP if current is None else ChangeKind.DELETE
        return PlanItem(target_id, label, kind, resource, row_id, before, None, key)
    after = {"value": action.value}
    if before is None:
        kind = ChangeKind.CREATE
    elif before == after:
        kind = ChangeKind.NOOP
    else:
        kind = ChangeKind.CHANGE
    return PlanItem(target_id, label, kind, resource, row_id, before, after, key)


def invert(item: PlanItem) -> PlanItem | None:
    """The item that undoes an applied ``item``: before and after swapped, a create undone by a delete
    (its row id is found by natural key when the undo plan is made) and a deleted child row re-created.
    None when it cannot be undone: a deleted device or fleet, or a no-op."""
    k = item.kind
    if k is ChangeKind.CHANGE:
        return replace(item, before=item.after, after=item.before)
    if k is ChangeKind.CREATE:
        return replace(item, kind=ChangeKind.DELETE, row_id=None, before=item.after, after=None)
    if k is ChangeKind.DELETE and item.before:  # a child row with its old value
        return replace(item, kind=ChangeKind.CREATE, row_id=None, before=None, after=item.before)
    return None
