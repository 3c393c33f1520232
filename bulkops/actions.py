"""What each action touches, and the per-target diff.

Two shapes of action:

* row actions (``patch``, ``move``, ``pin``, ``unpin``, ``delete``) write the target row itself;
* child actions (``set_env``/``remove_env``, ``set_config``/``remove_config``, ``set_tag``/``remove_tag``)
  write a row hanging off the target (``device_environment_variable`` for a device target,
  ``application_tag`` for a fleet target, …) whose natural key is (owner, name) or (owner, tag_key).

The diff is pure: it takes rows as the API returned them and gives one :class:`PlanItem` per target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bulkops.model import Action, ActionType, ChangeKind, JSONValue, PlanItem

CHILD_SUFFIX: dict[ActionType, str] = {
    ActionType.SET_ENV: "environment_variable",
    ActionType.REMOVE_ENV: "environment_variable",
    ActionType.SET_CONFIG: "config_variable",
    ActionType.REMOVE_CONFIG: "config_variable",
    ActionType.SET_TAG: "tag",
    ActionType.REMOVE_TAG: "tag",
}
REMOVALS = frozenset({ActionType.REMOVE_ENV, ActionType.REMOVE_CONFIG, ActionType.REMOVE_TAG})
LABEL_FIELD = {"device": "uuid", "application": "slug"}
FLEET_FIELD = {"device": "belongs_to__application", "application": "id"}


@dataclass(frozen=True, slots=True)
class Resolved:
    """Names resolved to ids before planning."""

    fleet_ids: Mapping[str, int] = field(default_factory=dict)  # slug -> id of the job's fleets
    move_to: int | None = None  # destination fleet id
    releases: Mapping[int, int] = field(default_factory=dict)  # fleet id -> release id to pin


def is_child(action: Action) -> bool:
    return action.type in CHILD_SUFFIX


def child_resource(action: Action, target_resource: str) -> str:
    """``device_environment_variable``, ``application_tag``, …"""
    return f"{target_resource}_{CHILD_SUFFIX[action.type]}"


def key_field(action: Action) -> str:
    return "tag_key" if CHILD_SUFFIX.get(action.type) == "tag" else "name"


def key_value(action: Action) -> str:
    value = action.key if CHILD_SUFFIX.get(action.type) == "tag" else action.name
    if value is None:
        raise ValueError(f"action {action.type} needs a name or key")
    return value


def written_resource(action: Action, target_resource: str) -> str:
    return child_resource(action, target_resource) if is_child(action) else target_resource


def row_fields(action: Action, target_resource: str) -> tuple[str, ...]:
    """The target-row fields a row action compares and writes (empty for delete and child actions)."""
    t = action.type
    if t is ActionType.PATCH:
        return tuple(action.fields)
    if t is ActionType.MOVE:
        return ("belongs_to__application",)
    if t is ActionType.PIN:
        if target_resource == "application":
            return ("should_be_running__release", "should_track_latest_release")
        return ("is_pinned_on__release",)
    if t is ActionType.UNPIN:
        if target_resource == "application":
            return ("should_track_latest_release",)
        return ("is_pinned_on__release",)
    return ()


def compared_fields(action: Action, target_resource: str) -> tuple[str, ...]:
    """Fields read back after a write to tell applied from drifted."""
    return ("value",) if is_child(action) else row_fields(action, target_resource)


def target_select(action: Action, target_resource: str) -> tuple[str, ...]:
    """``$select`` for paging the targets: id, label, fleet, and the fields a row action compares."""
    fields = ["id", LABEL_FIELD[target_resource]]
    if target_resource == "device":
        fields.append("belongs_to__application")
    for f in row_fields(action, target_resource):
        if f not in fields:
            fields.append(f)
    return tuple(fields)


def normalize(value: Any) -> JSONValue:
    """A to-one link as the API returns it (``{"__id": 5}``, an expanded array, null) → its id."""
    if isinstance(value, dict) and "__id" in value:
        return value["__id"]
    if isinstance(value, list):
        return normalize(value[0]) if value else None
    return value


def fleet_of(row: Mapping[str, Any], target_resource: str) -> int | None:
    v = normalize(row.get(FLEET_FIELD[target_resource]))
    return v if isinstance(v, int) else None


def wanted(
    action: Action, target_resource: str, fleet_id: int | None, resolved: Resolved
) -> dict[str, JSONValue]:
    """The after-values of a row action for a target in fleet ``fleet_id``."""
    t = action.type
    if t is ActionType.PATCH:
        return dict(action.fields)
    if t is ActionType.MOVE:
        return {"belongs_to__application": resolved.move_to}
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
