"""The ``[action]`` table of a job file: its type, the keys each type takes, and their values.

Env var, config var and tag values must be TOML strings (``value = "1.10"``, never ``value = 1.10``);
names follow balena's rules. ``set_env``/``remove_env`` of a ``BALENA_``/``RESIN_`` name is routed to
``set_config``/``remove_config`` and a note says so.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any

from bulkops import v7
from bulkops.job.fields import Where, accepted_hint, check_keys, check_slug, describe, found_hint, get_str
from bulkops.job.patch import parse_patch
from bulkops.model import Action, ActionType

T = ActionType

ACTION_KEYS: dict[ActionType, tuple[str, ...]] = {
    T.PATCH: ("fields", "clear"),
    T.DELETE: (),
    T.SET_ENV: ("name", "value"),
    T.REMOVE_ENV: ("name",),
    T.SET_CONFIG: ("name", "value"),
    T.REMOVE_CONFIG: ("name",),
    T.SET_TAG: ("key", "value"),
    T.REMOVE_TAG: ("key",),
    T.MOVE: ("to_fleet",),
    T.PIN: ("release",),
    T.UNPIN: (),
    T.SET_SERVICE_ENV: ("service", "name", "value"),
    T.REMOVE_SERVICE_ENV: ("service", "name"),
}
"""The keys each action type takes besides ``type``; a key of another type is refused."""

DEVICE_ONLY = frozenset({T.MOVE, T.UNPIN, T.SET_SERVICE_ENV, T.REMOVE_SERVICE_ENV})
CONFIG_PREFIXES = ("BALENA_", "RESIN_")
ROUTED = {T.SET_ENV: T.SET_CONFIG, T.REMOVE_ENV: T.REMOVE_CONFIG}
MAX_VAR_NAME = 255
MAX_SERVICE_NAME = 63  # service.service_name is Short Text of 1-63 characters

SEMVER = re.compile(r"\d{1,9}\.\d{1,9}\.\d{1,9}(?:-[0-9A-Za-z.-]{1,100})?(?:\+[0-9A-Za-z.-]{1,50})?")
COMMIT = re.compile(r"[0-9a-f]{7,40}")
RELEASE_HELP = 'a release semver such as "1.5.0" or a commit (7-40 lower-case hex characters)'


def release_kind(ref: str) -> str:
    """``"semver"`` or ``"commit"``: how the planner resolves a validated ``pin`` release."""
    return "semver" if SEMVER.fullmatch(ref) else "commit"


def _name_problem(name: str, config: bool) -> str | None:
    what = "config variable" if config else "env var"
    if not name:
        return f"{what} names cannot be empty"
    if len(name) > MAX_VAR_NAME:
        return f"{what} names are at most {MAX_VAR_NAME} characters, got {len(name)}"
    problem = v7.check_config_var_name(name) if config else v7.check_env_var_name(name)
    return f"invalid {what} name {name!r}: {problem}" if problem else None


def _value_problem(value: str, resource: str) -> str | None:
    if "\r" in value or "\n" in value:
        return "values cannot contain line breaks (CR or LF)"
    if len(value) > v7.VAR_VALUE_MAX:
        return f"values are at most {v7.VAR_VALUE_MAX:,} characters, got {len(value):,}"
    problem = v7.check_var_value(value, resource_name=resource)
    return f"value not accepted: {problem}" if problem else None


def _tag_problem(key: str, resource: str) -> str | None:
    limit = v7.TAG_KEY_MAX.get(resource, 100)
    if not 0 < len(key) <= limit:
        return f"tag keys are 1-{limit} characters, got {len(key)}"
    problem = v7.check_tag_key(key, resource_name=resource)
    return f"invalid tag key {key!r}: {problem}" if problem else None


def _raw_token(source: str, value: object) -> str:
    """The text the user wrote for a non-string ``value = …`` (``1.10`` stays ``1.10``), for the hint."""
    for m in re.finditer(r"(?m)^[ \t]*value[ \t]*=[ \t]*([^#\r\n]*?)[ \t]*(?:#.*)?$", source):
        token = m.group(1)
        try:
            parsed = tomllib.loads(f"v = {token}")["v"]
        except (tomllib.TOMLDecodeError, ValueError, RecursionError):
            continue
        if type(parsed) is type(value) and parsed == value:
            return token
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() > 128:
        return "..."
    return str(value)


def _string_value(where: Where, table: Mapping[str, Any], what: str, source: str) -> str:
    value = table.get("value")
    if value is None:
        hint = found_hint(table, "value")
        raise where.error("value", f"missing required key 'value' {where.place()}{hint}")
    if isinstance(value, str):
        return value
    hint = ""
    if not isinstance(value, list | dict):
        raw = _raw_token(source, value)
        shown = raw if len(raw) <= 60 else "..."
        hint = f"; {what} values are strings: write value = \"{shown}\""
    raise where.error("value", f"expected a string, got {describe(value)}{hint}")


def _action_type(where: Where, table: Mapping[str, Any]) -> ActionType:
    text = get_str(where, table, "type", required=True)
    assert text is not None
    try:
        return ActionType(text)
    except ValueError:
        accepted = [t.value for t in ActionType]
        raise where.error(
            "type",
            f"unknown action type {text!r}{accepted_hint(text, accepted, ', '.join(accepted))}",
        ) from None


def _check_action_keys(where: Where, table: Mapping[str, Any], kind: ActionType) -> None:
    own = ("type", *ACTION_KEYS[kind])
    for name in table:
        if name in own:
            continue
        users = [t.value for t, keys in ACTION_KEYS.items() if name in keys]
        if users:
            raise where.error(
                name,
                f"{name!r} does not apply to action type {kind.value!r} (it belongs to"
                f" {', '.join(users)}); accepted for {kind.value}: {', '.join(own)}",
            )
    check_keys(where, table, own, what=f"action type {kind.value!r}")


def _var_action(
    where: Where, table: Mapping[str, Any], kind: ActionType, resource: str, source: str
) -> tuple[Action, tuple[str, ...]]:
    name = get_str(where, table, "name", required=True)
    assert name is not None
    notes: list[str] = []
    if kind in ROUTED and name.startswith(CONFIG_PREFIXES):
        routed = ROUTED[kind]
        notes.append(
            f"{kind.value} {name} runs as {routed.value}: names starting with BALENA_ or RESIN_ are"
            f" config variables ({resource}_config_variable)"
        )
        kind = routed
    config = kind in (T.SET_CONFIG, T.REMOVE_CONFIG)
    if config and not name.startswith(CONFIG_PREFIXES):
        env = "set_env" if kind is T.SET_CONFIG else "remove_env"
        raise where.error(
            "name",
            f"config variable names start with BALENA_ or RESIN_, got {name!r}; for an environment"
            f' variable write type = "{env}"',
        )
    problem = _name_problem(name, config)
    if problem:
        raise where.error("name", problem)
    value = None
    if kind in (T.SET_ENV, T.SET_CONFIG):
        value = _string_value(where, table, "config var" if config else "env var", source)
        var_resource = f"{resource}_{'config' if config else 'environment'}_variable"
        problem = _value_problem(value, var_resource)
        if problem:
            raise where.error("value", problem)
    return Action(kind, name=name, value=value), tuple(notes)


def _service_var_action(where: Where, table: Mapping[str, Any], kind: ActionType, source: str) -> Action:
    """A device service variable: env var rules (no BALENA_/RESIN_ routing: a service has no config
    variables), and the service by its name in the device's fleet."""
    service = get_str(where, table, "service", required=True)
    assert service is not None
    if not 0 < len(service) <= MAX_SERVICE_NAME or any(c.isspace() or not c.isprintable() for c in service):
        raise where.error(
            "service", f"expected a service name of 1-{MAX_SERVICE_NAME} characters without spaces, as in "
            f"the fleet's docker-compose.yml (e.g. \"main\"), got {describe(service)}")
    name = get_str(where, table, "name", required=True)
    assert name is not None
    if name.startswith(CONFIG_PREFIXES):
        raise where.error(
            "name", f"invalid env var name {name!r}: Environment variables beginning with "
            f"{', '.join(v7.RESERVED_VAR_PREFIXES)} are reserved. (a service has no config variables: "
            'set BALENA_/RESIN_ names on the device with type = "set_config")')
    problem = _name_problem(name, False)
    if problem:
        raise where.error("name", problem)
    value = None
    if kind is T.SET_SERVICE_ENV:
        value = _string_value(where, table, "env var", source)
        problem = _value_problem(value, "device_service_environment_variable")
        if problem:
            raise where.error("value", problem)
    return Action(kind, name=name, value=value, service=service)


def _tag_action(
    where: Where, table: Mapping[str, Any], kind: ActionType, resource: str, source: str
) -> Action:
    key = get_str(where, table, "key", required=True)
    assert key is not None
    problem = _tag_problem(key, f"{resource}_tag")
    if problem:
        raise where.error("key", problem)
    value = None
    if kind is T.SET_TAG:
        value = _string_value(where, table, "tag", source)
        limit = v7.TAG_VALUE_MAX.get(f"{resource}_tag", 1_000)
        if len(value) > limit:
            raise where.error(
                "value", f"{resource} tag values are at most {limit:,} characters, got {len(value):,}"
            )
    return Action(kind, key=key, value=value)


def parse_action(
    where: Where, table: Mapping[str, Any], resource: str, source: str
) -> tuple[Action, tuple[str, ...]]:
    """The ``[action]`` table for a job on ``resource`` ("device" or "application"), with notes."""
    kind = _action_type(where, table)
    _check_action_keys(where, table, kind)
    if kind in DEVICE_ONLY and resource != "device":
        hint = ""
        if kind is T.UNPIN:
            hint = "; to make fleets follow their latest release, patch should_track_latest_release = true"
        raise where.error("type", f"action type {kind.value!r} applies to devices only{hint}")
    if kind is T.DELETE and resource != "device":
        raise where.error(
            "type", "deleting fleets is not supported: it would delete every device and release in them"
        )
    notes: tuple[str, ...] = ()
    if kind in (T.SET_ENV, T.REMOVE_ENV, T.SET_CONFIG, T.REMOVE_CONFIG):
        action, notes = _var_action(where, table, kind, resource, source)
    elif kind in (T.SET_TAG, T.REMOVE_TAG):
        action = _tag_action(where, table, kind, resource, source)
    elif kind in (T.SET_SERVICE_ENV, T.REMOVE_SERVICE_ENV):
        action = _service_var_action(where, table, kind, source)
    elif kind is T.PATCH:
        action = Action(kind, fields=parse_patch(where, table, resource))
    elif kind is T.MOVE:
        fleet = get_str(where, table, "to_fleet", required=True)
        assert fleet is not None
        action = Action(kind, to_fleet=check_slug(where, "to_fleet", fleet))
    elif kind is T.PIN:
        ref = get_str(where, table, "release", required=True)
        assert ref is not None
        if not (SEMVER.fullmatch(ref) or COMMIT.fullmatch(ref)):
            raise where.error("release", f"expected {RELEASE_HELP}, got {describe(ref)}")
        action = Action(kind, release=ref)
    else:
        action = Action(kind)
    return action, notes
