"""The shapes of the v7 model: field types, fields, navigations, resources, and the helpers that
build them."""

from __future__ import annotations

from collections.abc import Sequence
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


# --- building blocks ---------------------------------------------------------------------------

T = FieldType


def _f(name: str, type_: FieldType, *, null: bool = False, ro: bool = False, ref: str | None = None,
       enum: tuple[str, ...] = (), max_length: int | None = None, v7: bool = False,
       computed: bool = False) -> FieldDef:
    return FieldDef(name, type_, nullable=null, writable=not (ro or computed), references=ref, enum=enum,
                    max_length=max_length, v7_only=v7, computed=computed)


def _fk(name: str, target: str, *, null: bool = False, ro: bool = False, v7: bool = False,
        computed: bool = False) -> FieldDef:
    return _f(name, T.FK, null=null, ro=ro, ref=target, v7=v7, computed=computed)


def _common() -> list[FieldDef]:
    return [
        _f("id", T.SERIAL, ro=True),
        _f("created_at", T.DATETIME, ro=True),
        _f("modified_at", T.DATETIME, ro=True),
    ]


def _one(name: str, target: str, *aliases: str, via: str | None = None) -> list[Navigation]:
    """A to-one navigation along the FK field ``via`` (default: the navigation's own name)."""
    return [Navigation(n, target, False, via or name) for n in (name, *aliases)]


def _many(name: str, target: str, via: str, *aliases: str) -> list[Navigation]:
    """A to-many navigation: rows of ``target`` whose FK ``via`` points at this row."""
    return [Navigation(n, target, True, via) for n in (name, *aliases)]


def _res(name: str, fields: list[FieldDef], navs: Sequence[list[Navigation]] = (),
         unique: tuple[tuple[str, ...], ...] = (), aliases: tuple[str, ...] = ()) -> ResourceDef:
    all_fields = {f.name: f for f in (*_common(), *fields)}
    navigations = {n.name: n for group in navs for n in group}
    return ResourceDef(name, all_fields, navigations, unique, aliases)

