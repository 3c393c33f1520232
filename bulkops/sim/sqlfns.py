"""The pieces of the SQL compiler that are tables: value kinds, compiled expressions, the OData
functions as SQLite expressions, and the SQL of computed fields (``device.overall_status`` …)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bulkops.sim.db import iso
from bulkops.v7 import FieldDef, FieldType

INT, NUM, BOOL, TEXT, DATETIME, DATE, JSON, NULL, DURATION = (
    "int",
    "num",
    "bool",
    "text",
    "datetime",
    "date",
    "json",
    "null",
    "duration",
)

_KIND_OF: dict[FieldType, str] = {
    FieldType.SERIAL: INT,
    FieldType.INTEGER: INT,
    FieldType.BIG_INTEGER: INT,
    FieldType.FK: INT,
    FieldType.BOOLEAN: BOOL,
    FieldType.SHORT_TEXT: TEXT,
    FieldType.TEXT: TEXT,
    FieldType.HASHED: TEXT,
    FieldType.DATETIME: DATETIME,
    FieldType.JSON: JSON,
}
SQLITE_ISO = "%Y-%m-%dT%H:%M:%fZ"


class CompileError(Exception):
    """The tree names something the model lacks, or compares incompatible values: balena answers 500."""


class Context(Protocol):
    """What function and computed-field builders need from the compiler."""

    now: datetime

    def alias(self) -> str: ...


@dataclass(slots=True)
class Expr:
    sql: str
    params: list[Any]
    kind: str
    nullable: bool = True
    const: Any = None  # the Python value of a constant datetime/duration (folded in Python)


# --- functions ------------------------------------------------------------------------------------

Builder = Callable[[Context, list[Expr]], Expr]


def _p(*exprs: Expr) -> list[Any]:
    return [p for e in exprs for p in e.params]


def _bool(sql: str, *exprs: Expr) -> Expr:
    return Expr(sql, _p(*exprs), BOOL)


def _contains(a: Expr, b: Expr) -> Expr:
    return _bool(f"(instr({a.sql}, {b.sql}) > 0)", a, b)


def _startswith(a: Expr, b: Expr) -> Expr:
    return _bool(f"(substr({a.sql}, 1, length({b.sql})) = {b.sql})", a, b, b)


def _endswith(a: Expr, b: Expr) -> Expr:
    return _bool(f"(length({b.sql}) = 0 OR substr({a.sql}, -length({b.sql})) = {b.sql})", b, a, b, b)


def _part(start: int, length: int) -> Builder:
    def build(c: Context, a: list[Expr]) -> Expr:
        if a[0].kind not in (DATETIME, DATE, TEXT):
            raise CompileError("a date part of a non-date")
        return Expr(f"CAST(substr({a[0].sql}, {start}, {length}) AS INTEGER)", a[0].params, INT)

    return build


def _now(c: Context, a: list[Expr]) -> Expr:
    return Expr("?", [iso(c.now)], DATETIME, False, c.now)


def _floor(c: Context, a: list[Expr]) -> Expr:
    x = a[0]
    return Expr(f"(CAST({x.sql} AS INTEGER) - ({x.sql} < CAST({x.sql} AS INTEGER)))", _p(x, x, x, x), INT)


def _ceiling(c: Context, a: list[Expr]) -> Expr:
    x = a[0]
    return Expr(f"(CAST({x.sql} AS INTEGER) + ({x.sql} > CAST({x.sql} AS INTEGER)))", _p(x, x, x, x), INT)


def _substring(c: Context, a: list[Expr]) -> Expr:
    if len(a) == 2:
        return Expr(f"substr({a[0].sql}, {a[1].sql} + 1)", _p(*a), TEXT)
    return Expr(f"substr({a[0].sql}, {a[1].sql} + 1, {a[2].sql})", _p(*a), TEXT)


FUNCTIONS: dict[str, tuple[tuple[int, ...], Builder]] = {
    "contains": ((2,), lambda c, a: _contains(a[0], a[1])),
    "substringof": ((2,), lambda c, a: _contains(a[1], a[0])),
    "startswith": ((2,), lambda c, a: _startswith(a[0], a[1])),
    "endswith": ((2,), lambda c, a: _endswith(a[0], a[1])),
    "tolower": ((1,), lambda c, a: Expr(f"lower({a[0].sql})", a[0].params, TEXT)),
    "toupper": ((1,), lambda c, a: Expr(f"upper({a[0].sql})", a[0].params, TEXT)),
    "trim": ((1,), lambda c, a: Expr(f"trim({a[0].sql})", a[0].params, TEXT)),
    "length": ((1,), lambda c, a: Expr(f"length({a[0].sql})", a[0].params, INT)),
    "indexof": ((2,), lambda c, a: Expr(f"(instr({a[0].sql}, {a[1].sql}) - 1)", _p(*a), INT)),
    "concat": (
        (2,),
        lambda c, a: Expr(f"(COALESCE({a[0].sql}, '') || COALESCE({a[1].sql}, ''))", _p(*a), TEXT),
    ),
    "replace": ((3,), lambda c, a: Expr(f"replace({a[0].sql}, {a[1].sql}, {a[2].sql})", _p(*a), TEXT)),
    "substring": ((2, 3), _substring),
    "year": ((1,), _part(1, 4)),
    "month": ((1,), _part(6, 2)),
    "day": ((1,), _part(9, 2)),
    "hour": ((1,), _part(12, 2)),
    "minute": ((1,), _part(15, 2)),
    "second": ((1,), _part(18, 2)),
    "fractionalseconds": (
        (1,),
        lambda c, a: Expr(f"(CAST(substr({a[0].sql}, 20, 3) AS INTEGER) / 1000.0)", a[0].params, NUM),
    ),
    "totaloffsetminutes": ((1,), lambda c, a: Expr("0", [], INT, False)),
    "round": ((1,), lambda c, a: Expr(f"CAST(round({a[0].sql}) AS INTEGER)", a[0].params, INT)),
    "floor": ((1,), _floor),
    "ceiling": ((1,), _ceiling),
    "now": ((0,), _now),
    "maxdatetime": ((0,), lambda c, a: Expr("'9999-12-31T23:59:59.999Z'", [], DATETIME, False)),
    "mindatetime": ((0,), lambda c, a: Expr("'0001-01-01T00:00:00.000Z'", [], DATETIME, False)),
    "date": ((1,), lambda c, a: Expr(f"substr({a[0].sql}, 1, 10)", a[0].params, DATE)),
    "time": ((1,), lambda c, a: Expr(f"substr({a[0].sql}, 12, 12)", a[0].params, TEXT)),
}


# --- computed fields ------------------------------------------------------------------------------


def _device_target(c: Context, a: str) -> str:
    x = c.alias()
    return (
        f'COALESCE({a}."is_pinned_on__release", (SELECT {x}."should_be_running__release" '
        f'FROM "application" {x} WHERE {x}."id" = {a}."belongs_to__application"))'
    )


def _updating(a: str) -> str:
    return (
        f'(({a}."status" = \'Downloading\' AND {a}."download_progress" IS NOT NULL) '
        f"OR {a}.\"update_status\" = 'downloading')"
    )


def _offline(a: str) -> str:
    return f'({a}."is_online" = 0 OR {a}."api_heartbeat_state" = \'offline\')'


def _overall_status(c: Context, a: str) -> str:
    return (
        f"(CASE WHEN {_offline(a)} THEN 'disconnected' "
        f"WHEN {_updating(a)} THEN 'updating' ELSE 'operational' END)"
    )


def _overall_progress(c: Context, a: str) -> str:
    return (
        f'(CASE WHEN {a}."is_online" = 0 OR {a}."api_heartbeat_state" = \'offline\' THEN NULL '
        f'WHEN {_updating(a)} THEN {a}."download_progress" ELSE {a}."provisioning_progress" END)'
    )


def _semver_core(a: str) -> str:
    return (
        f'({a}."semver_major" || \'.\' || {a}."semver_minor" || \'.\' || {a}."semver_patch" || '
        f"CASE WHEN {a}.\"semver_prerelease\" != '' THEN '-' || {a}.\"semver_prerelease\" ELSE '' END)"
    )


def _semver(c: Context, a: str) -> str:
    return (
        f"({_semver_core(a)} || CASE WHEN {a}.\"semver_build\" != '' THEN '+' || {a}.\"semver_build\" "
        f"ELSE '' END)"
    )


def _raw_version(c: Context, a: str) -> str:
    return (
        f"({_semver_core(a)} || CASE WHEN {a}.\"revision\" > 0 THEN '+rev' || {a}.\"revision\" ELSE '' END)"
    )


def _version(c: Context, a: str) -> str:
    return (
        f"json_object('raw', {_raw_version(c, a)}, 'major', {a}.\"semver_major\", 'minor', "
        f"{a}.\"semver_minor\", 'patch', {a}.\"semver_patch\", 'version', {_semver_core(a)}, "
        f"'prerelease', json_array(), 'build', json_array())"
    )


COMPUTED: dict[tuple[str, str], Callable[[Context, str], str]] = {
    ("device", "should_be_running__release"): _device_target,
    ("device", "overall_status"): _overall_status,
    ("device", "overall_progress"): _overall_progress,
    ("device", "is_web_accessible"): lambda c, a: "0",
    ("release", "is_final"): lambda c, a: f'({a}."revision" IS NOT NULL)',
    ("release", "semver"): _semver,
    ("release", "raw_version"): _raw_version,
    ("release", "version"): _version,
}


def field_kind(fd: FieldDef) -> str:
    return _KIND_OF[fd.type]
