"""``type = "patch"``: the ``fields`` to write and the ``clear`` list of fields to set to null.

Each field must exist on the target resource, be writable, and get a value of its v7 type: a TOML
boolean for Boolean, an integer for Integer, a string for text (enum and length checked), an offset
date-time for Date Time, anything for JSON. TOML has no null, so ``clear = ["note"]`` sets fields to null.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from bulkops import v7
from bulkops.job.fields import Where, close_matches, describe, get_str_list
from bulkops.model import JSONValue
from bulkops.v7 import FieldDef, FieldType

SHORT_TEXT_MAX = 255

DEDICATED = {
    ("device", "belongs_to__application"): 'use type = "move" with to_fleet',
    ("device", "is_pinned_on__release"): 'use type = "pin" or type = "unpin"',
    ("application", "should_be_running__release"): 'use type = "pin"',
}
"""FK fields with an action of their own (by slug or release, never by raw id)."""

_TYPE_WORDS = {
    FieldType.BOOLEAN: "a boolean (true or false)",
    FieldType.INTEGER: "an integer",
    FieldType.BIG_INTEGER: "an integer",
    FieldType.SHORT_TEXT: "a string",
    FieldType.TEXT: "a string",
    FieldType.DATETIME: "a date-time with a UTC offset, e.g. 2026-01-31T00:00:00Z",
}


def _json(value: object) -> JSONValue:
    """A TOML value as JSON data: date-times become ISO-8601 strings."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return value


def _utc_text(value: dt.datetime) -> str:
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _writable(where: Where, key: str, resource: str, name: str) -> FieldDef:
    res = v7.resource(resource)
    fld = res.fields.get(name)
    if fld is None:
        writable = [f.name for f in res.fields.values() if f.writable and f.type is not FieldType.FK]
        hint = close_matches(name, writable)
        raise where.error(key, f"unknown field {name!r} on resource {resource!r}{hint}")
    if (resource, name) in DEDICATED:
        raise where.error(key, f"field {name!r} is not patched directly: {DEDICATED[resource, name]}")
    if not fld.writable or fld.computed or fld.type in (FieldType.SERIAL, FieldType.HASHED):
        raise where.error(key, f"field {name!r} on resource {resource!r} is read-only (set by the API)")
    if fld.type is FieldType.FK:
        raise where.error(
            key, f"field {name!r} references another resource by id; patch does not set references"
        )
    if (name,) in res.unique_keys:
        raise where.error(
            key, f"field {name!r} is unique per {resource}: one value cannot be written to many rows"
        )
    return fld


def _typed(where: Where, key: str, fld: FieldDef, value: object) -> JSONValue:
    kind = fld.type
    if kind is FieldType.JSON:
        return _json(value)
    if kind is FieldType.BOOLEAN and isinstance(value, bool):
        return value
    if kind in (FieldType.INTEGER, FieldType.BIG_INTEGER) and isinstance(value, int) and not isinstance(
        value, bool
    ):
        if abs(value) >= 2**63:
            raise where.error(key, f"expected an integer below 2^63, got {describe(value)}")
        return value
    if kind is FieldType.DATETIME and isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise where.error(key, f"expected {_TYPE_WORDS[kind]}, got a date-time without an offset")
        try:
            return _utc_text(value)
        except (OverflowError, ValueError):
            raise where.error(key, f"date-time out of range: {value.isoformat()}") from None
    if kind in (FieldType.SHORT_TEXT, FieldType.TEXT) and isinstance(value, str):
        if fld.enum and value not in fld.enum:
            raise where.error(key, f"expected one of {', '.join(fld.enum)}, got {describe(value)}")
        limit = fld.max_length or (SHORT_TEXT_MAX if kind is FieldType.SHORT_TEXT else None)
        if limit is not None and len(value) > limit:
            raise where.error(key, f"expected at most {limit} characters, got {len(value)}")
        if fld.name == "device_name" and ("\r" in value or "\n" in value):
            raise where.error(key, "device names cannot contain line breaks")
        return value
    words = _TYPE_WORDS.get(kind, f"a {kind.value} value")
    raise where.error(key, f"expected {words} for {kind.value} field {fld.name!r}, got {describe(value)}")


def parse_patch(where: Where, table: Mapping[str, Any], resource: str) -> dict[str, JSONValue]:
    """The body of a patch: ``fields`` type-checked, plus ``None`` for each name in ``clear``."""
    raw = table.get("fields", {})
    if not isinstance(raw, dict):
        raise where.error("fields", f"expected a table of field = value, got {describe(raw)}")
    body: dict[str, JSONValue] = {}
    for name, value in raw.items():
        key = f"fields.{name}"
        body[name] = _typed(where, key, _writable(where, key, resource, name), value)
    for i, name in enumerate(get_str_list(where, table, "clear") or []):
        key = f"clear[{i}]"
        fld = _writable(where, key, resource, name)
        if name in body:
            state = "set in fields" if body[name] is not None else "listed twice"
            raise where.error(key, f"field {name!r} is {state}; clear it or set it, not both")
        if not fld.nullable:
            raise where.error(key, f"field {name!r} on resource {resource!r} cannot be null")
        body[name] = None
    if not body:
        raise where.error(
            None, 'patch needs at least one field: fields = { note = "..." } or clear = ["note"]'
        )
    return body
