"""What each action touches in the v7 model.

Two shapes of action:

* row actions (``patch``, ``move``, ``pin``, ``unpin``, ``delete``) write the target row itself;
* child actions (``set_env``/``remove_env``, ``set_config``/``remove_config``, ``set_tag``/``remove_tag``)
  write a row hanging off the target (``device_environment_variable`` for a device target,
  ``application_tag`` for a fleet target, …) whose natural key is (owner, name) or (owner, tag_key).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bulkops.model import Action, ActionType, JSONValue

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
    if t is ActionType.MOVE:  # a move clears the pin: the plan keeps it, so that an undo restores it
        return ("belongs_to__application", "is_pinned_on__release")
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

