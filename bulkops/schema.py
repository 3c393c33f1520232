"""The balena API v7 model as data: resources, fields, keys, navigations, validation rules.

One source for both sides: the job validator checks names against it, and the simulator builds its
SQLite tables and answers from it. Facts come from the v7 model reference (fields, types, writability,
unique keys, navigation names and their aliases).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FieldType(StrEnum):
    SERIAL = "serial"  # integer primary key
    INTEGER = "integer"
    BIG_INTEGER = "big_integer"  # read back as a string in v7
    BOOLEAN = "boolean"
    SHORT_TEXT = "short_text"  # <= 255 chars
    TEXT = "text"
    DATETIME = "datetime"  # ISO-8601 UTC with milliseconds, 'Z'
    JSON = "json"
    FK = "fk"  # foreign key: {"__id": n} when not expanded
    HASHED = "hashed"


@dataclass(frozen=True, slots=True)
class FieldDef:
    name: str
    type: FieldType
    nullable: bool = False
    writable: bool = True  # False for computed and hook-managed fields
    references: str | None = None  # target resource for FK fields
    enum: tuple[str, ...] = ()  # allowed values of a closed text field
    max_length: int | None = None
    v7_only: bool = False  # absent from /v6
    computed: bool = False


@dataclass(frozen=True, slots=True)
class Navigation:
    """A navigation property. To-one navigations are FK fields of this resource (``via`` = the field);
    to-many navigations are reverse FKs (``via`` = the FK field on ``target`` pointing back here)."""

    name: str
    target: str
    many: bool
    via: str


@dataclass(frozen=True, slots=True)
class ResourceDef:
    name: str
    fields: dict[str, FieldDef]
    navigations: dict[str, Navigation] = field(default_factory=dict)
    unique_keys: tuple[tuple[str, ...], ...] = ()  # alternate keys, e.g. (("uuid",),) or (("device","name"),)
    aliases: tuple[str, ...] = ()  # canonical long names that address the same resource


# RESOURCES: dict[str, ResourceDef] is defined below; look names up with resource() and field_of().
