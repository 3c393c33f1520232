"""The OData ``$filter`` tree, shared by every direction of the grammar.

``parse(text) -> Node`` (``bulkops.odata.parser``), ``render(node) -> str`` (``bulkops.odata.render``)
and the simulator's ``compile`` to SQL (``bulkops.sim.sql``) all speak these nodes, and nothing else.
Build filters as trees (see the helpers at the bottom), never by pasting strings.

Balena's dialect (pinejs): ``and``/``or`` share one precedence and group left to right; ``ne`` matches
nulls; string literals double their quotes; ``datetime'…'`` is a datetime literal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

Scalar = str | int | Decimal | bool | datetime | None


class LiteralKind(StrEnum):
    STRING = "string"  # 'text'           value: str
    NUMBER = "number"  # 5, -1.5          value: int | Decimal
    BOOL = "bool"  # true / false          value: bool
    NULL = "null"  # null                  value: None
    DATETIME = "datetime"  # datetime'…'   value: datetime (timezone-aware, UTC)
    DATE = "date"  # date'YYYY-MM-DD'      value: str 'YYYY-MM-DD'
    DURATION = "duration"  # duration'P…'  value: str, the ISO-8601 duration as written


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"
    AND = "and"
    OR = "or"
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    MOD = "mod"


COMPARISONS = frozenset({Op.EQ, Op.NE, Op.GT, Op.GE, Op.LT, Op.LE})
LOGICAL = frozenset({Op.AND, Op.OR})
ARITHMETIC = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MOD})


@dataclass(frozen=True, slots=True)
class Literal:
    kind: LiteralKind
    value: Scalar


@dataclass(frozen=True, slots=True)
class Path:
    """A property path: ``note``, ``belongs_to__application/app_name``, or ``t/tag_key`` inside a lambda
    whose variable is ``t`` (then ``segments[0]`` is the lambda variable)."""

    segments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BinOp:
    """``left op right`` for comparisons, ``and``/``or`` and arithmetic."""

    op: Op
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class In:
    """``path in (v1, v2, …)``: at least one literal."""

    left: Node
    values: tuple[Literal, ...]


@dataclass(frozen=True, slots=True)
class Call:
    """A function call: ``startswith(device_name,'gw')``, ``tolower(x)``, ``now()``."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Lambda:
    """``nav/any(v: body)`` or ``nav/all(v: body)``. ``nav`` may be a multi-segment path
    (``device/any(...)`` inside another lambda uses the outer variable as its first segment)."""

    nav: Path
    kind: str  # "any" | "all"
    var: str
    body: Node


@dataclass(frozen=True, slots=True)
class Count:
    """``nav/$count`` (used in comparisons), optionally ``nav/$count($filter=…)``."""

    nav: Path
    filter: Node | None = None


Node = Literal | Path | BinOp | Not | In | Call | Lambda | Count


# --- builders: the only way the engine makes filters ----------------------------------------------


def lit(value: Scalar) -> Literal:
    """A literal of the kind its Python type implies (str → string, datetime → datetime, …)."""
    if value is None:
        return Literal(LiteralKind.NULL, None)
    if isinstance(value, bool):
        return Literal(LiteralKind.BOOL, value)
    if isinstance(value, int | Decimal):
        return Literal(LiteralKind.NUMBER, value)
    if isinstance(value, datetime):
        return Literal(LiteralKind.DATETIME, value)
    return Literal(LiteralKind.STRING, value)


def path(dotted: str) -> Path:
    """``path("belongs_to__application/slug")``."""
    return Path(tuple(dotted.split("/")))


def eq(field: str, value: Scalar) -> BinOp:
    return BinOp(Op.EQ, path(field), lit(value))


def in_(field: str, values: Iterable[Scalar]) -> In:
    vals = tuple(lit(v) for v in values)
    if not vals:
        raise ValueError("in_() needs at least one value: balena rejects 'in ()'")
    return In(path(field), vals)


def and_(*nodes: Node | None) -> Node:
    """AND of the given nodes (None skipped), grouped left to right."""
    present = [n for n in nodes if n is not None]
    if not present:
        raise ValueError("and_() needs at least one node")
    out = present[0]
    for n in present[1:]:
        out = BinOp(Op.AND, out, n)
    return out


def or_(*nodes: Node) -> Node:
    if not nodes:
        raise ValueError("or_() needs at least one node")
    out = nodes[0]
    for n in nodes[1:]:
        out = BinOp(Op.OR, out, n)
    return out


def any_(nav: str, var: str, body: Node) -> Lambda:
    return Lambda(path(nav), "any", var, body)
