"""Write-time rules: body values checked and coerced per field type, and balena's per-resource rules
(variable names and values, tag keys, device names and uuids, fleet names) with its exact messages.

``ApiError`` carries the status and body balena answers with: ``message`` is sent as a JSON string,
``None`` means an empty body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from bulkops import v7
from bulkops.sim.db import normalize_datetime
from bulkops.v7 import FieldDef, FieldType, ResourceDef

_DIGITS = re.compile(r"^[+-]?\d+$")
_DEVICE_UUID = re.compile(r"^[a-f0-9]{32}([a-f0-9]{30})?$")
_APP_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)$")

NO_APP = "Application doesn't exist or you have no access to it."
# Stamps the model lists as hook-managed that a PATCH may still set: balena stores the value as given
# (observed: ``PATCH device(N) {"last_connectivity_event": …}`` is 200). In one PATCH with ``is_online``,
# the stamp of now that writing ``is_online`` makes wins.
PATCHABLE_STAMPS = frozenset({("device", "last_connectivity_event")})


class ApiError(Exception):
    """An HTTP answer other than success: ``status`` and an optional JSON-string ``message``."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


class UnknownName(ApiError):
    """A name the model lacks (in a body or a query): 500, empty body."""

    def __init__(self) -> None:
        super().__init__(500)


def coerce(fd: FieldDef, value: Any) -> Any:
    """A JSON body value as stored for ``fd``; ApiError(400) for a wrong type, (500) for a null in a
    non-nullable field (the database refuses it)."""
    if value is None:
        if not fd.nullable:
            raise ApiError(500)
        return None
    t = fd.type
    if t in (FieldType.INTEGER, FieldType.FK, FieldType.BIG_INTEGER, FieldType.SERIAL):
        if isinstance(value, dict) and t is FieldType.FK and "__id" in value:
            value = value["__id"]
        if isinstance(value, bool):
            raise ApiError(400)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _DIGITS.match(value):
            return int(value)
        raise ApiError(400)
    if t is FieldType.BOOLEAN:
        if isinstance(value, bool):
            return 1 if value else 0
        if isinstance(value, int) and value in (0, 1):
            return value
        raise ApiError(400)
    if t in (FieldType.SHORT_TEXT, FieldType.TEXT, FieldType.HASHED):
        if not isinstance(value, str):
            raise ApiError(400)
        if t is FieldType.SHORT_TEXT and len(value) > 255:
            raise ApiError(400)
        if fd.enum and value not in fd.enum:
            raise ApiError(400)
        return value
    if t is FieldType.DATETIME:
        try:
            return normalize_datetime(value)
        except (ValueError, OverflowError, OSError):
            raise ApiError(400) from None
    if t is FieldType.JSON:
        return orjson.dumps(value).decode()
    raise ApiError(400)


def coerce_body(res: ResourceDef, body: Mapping[str, Any], *, strict: bool) -> dict[str, Any]:
    """The writable fields of ``body`` in stored form. ``strict`` (PATCH): an unknown name → 500;
    otherwise (POST) unknown names are ignored. Read-only and computed fields are ignored, except the
    stamps a PATCH may set (``PATCHABLE_STAMPS``)."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        fd = res.fields.get(name)
        if fd is None:
            if strict:
                raise UnknownName
            continue
        if not fd.writable and not (strict and (res.name, name) in PATCHABLE_STAMPS):
            continue
        out[name] = coerce(fd, value)
    return out


def unique_message(error_text: str) -> str:
    """balena's 409 text for a SQLite unique violation: ``"device" and "name" must be unique.``"""
    m = _UNIQUE.search(error_text)
    cols = [c.strip().split(".", 1)[-1] for c in m.group(1).split(",")] if m else ["id"]
    quoted = [f'"{c}"' for c in cols]
    names = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
    return f"{names} must be unique."


def check_values(res: ResourceDef, values: Mapping[str, Any], *, creating: bool) -> None:
    """balena's validation hooks for the values being written (POST, PATCH, PUT); ApiError(400)."""
    name = res.name
    problem: str | None = None
    if name in v7.ENV_VAR_RESOURCES or name in v7.CONFIG_VAR_RESOURCES:
        if isinstance(values.get("name"), str):
            check = (
                v7.check_env_var_name
                if name in v7.ENV_VAR_RESOURCES
                else v7.check_config_var_name
            )
            problem = check(values["name"])
        if problem is None and isinstance(values.get("value"), str):
            problem = v7.check_var_value(values["value"], resource_name=name)
    elif name in v7.TAG_RESOURCES:
        if isinstance(values.get("tag_key"), str):
            problem = v7.check_tag_key(values["tag_key"], resource_name=name)
        if problem is None and isinstance(values.get("value"), str):
            problem = v7.check_tag_value(values["value"], resource_name=name)
    elif name == "device":
        device_name = values.get("device_name")
        if isinstance(device_name, str) and re.search(r"[\r\n]", device_name):
            problem = "Device name cannot contain any newline characters."
        uuid = values.get("uuid")
        if problem is None and creating and uuid is not None and not _DEVICE_UUID.match(uuid):
            problem = "Device UUID must be a 32 or 62 character long lower case hex string."
        if problem is None and not creating and isinstance(uuid, str) and len(uuid) > 62:
            problem = (
                "It is necessary that each device has a uuid that has a Length (Type) that is less "
                "than or equal to 62."
            )
    elif name == "application":
        app_name = values.get("app_name")
        if isinstance(app_name, str):
            if not _APP_NAME.match(app_name):
                problem = "App name may only contain [a-zA-Z0-9_-]."
            elif not 4 <= len(app_name) <= 100:
                problem = (
                    "It is necessary that each application has an app name that has a Length (Type) "
                    "that is greater than or equal to 4 and is less than or equal to 100."
                )
    if problem is not None:
        raise ApiError(400, problem)


POST_GENERATED: dict[str, frozenset[str]] = {
    "device": frozenset({"uuid", "device_name", "api_heartbeat_state"}),
    "application": frozenset({"uuid", "application_type", "is_of__class"}),
    "release": frozenset({"variant", "composition", "source"}),
    "image_install": frozenset({"install_date", "status"}),
}


def missing_required(res: ResourceDef, values: Mapping[str, Any]) -> bool:
    """Whether a POST lacks a field balena cannot default (answered 500, empty body)."""
    generated = POST_GENERATED.get(res.name, frozenset())
    for fd in res.fields.values():
        if fd.nullable or not fd.writable or fd.type is FieldType.BOOLEAN or fd.name in generated:
            continue
        if values.get(fd.name) is None:
            return True
    return False


PIN_RULE = (
    "It is necessary that each device that is pinned on a release, is pinned on a release that "
    'has a status that is equal to "success" and belongs to an application that the device '
    "belongs to."
)
TARGET_RULE = (
    "It is necessary that each application that should be running a release, should be running "
    'a release that has a status that is equal to "success" and belongs to the application.'
)


def fk_message(fd: FieldDef) -> str:
    """balena's 409 text when a link points at a row that does not exist."""
    target = (fd.references or fd.name).replace("_", " ")
    return f"Data is referenced by {target}."
