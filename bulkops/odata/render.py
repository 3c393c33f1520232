"""Render an ``ast`` tree as canonical balena ``$filter`` text: ``parse(render(node)) == node``.

The text is not URL-encoded (the HTTP layer does that). Parentheses go wherever balena's grammar needs
them, plus a few for the reader: an ``and``/``or`` on the right of another ``and``/``or`` is always
wrapped, and so is one on the left whose operator differs, because balena gives both one rank and
groups left to right (``a or b and c`` means ``(a or b) and c`` there, unlike OData v4).

A tree that no text could express (a name that is not an identifier, a naive datetime, an unknown
function, a wrong number of arguments, an empty ``in``) raises ``ValueError``: render never emits text
that would parse to something else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bulkops.odata.ast import (
    ARITHMETIC,
    COMPARISONS,
    LOGICAL,
    BinOp,
    Call,
    Count,
    In,
    Lambda,
    Literal,
    LiteralKind,
    Node,
    Not,
    Path,
)
from bulkops.odata.lexer import FUNCTIONS, IDENTIFIER, KEYWORDS, LAMBDA_KINDS, RANK, is_date, is_duration

_ATOM = 100  # rank of anything that needs no parentheses as an operand


def render(node: Node) -> str:
    """The canonical ``$filter`` text of ``node``."""
    return _render(node)


def render_literal(literal: Literal) -> str:
    """``'O''Brien'``, ``5``, ``-1.5``, ``true``, ``null``, ``datetime'2026-11-27T08:25:11.618Z'``, …"""
    kind, value = literal.kind, literal.value
    if kind is LiteralKind.STRING and isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if kind is LiteralKind.NUMBER and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if kind is LiteralKind.NUMBER and isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot render the number {value}: only finite numbers exist in OData")
        return format(value, "f")
    if kind is LiteralKind.BOOL and isinstance(value, bool):
        return "true" if value else "false"
    if kind is LiteralKind.NULL and value is None:
        return "null"
    if kind is LiteralKind.DATETIME and isinstance(value, datetime):
        return f"datetime'{format_datetime(value)}'"
    if kind is LiteralKind.DATE and isinstance(value, str) and is_date(value):
        return f"date'{value}'"
    if kind is LiteralKind.DURATION and isinstance(value, str) and is_duration(value):
        return f"duration'{value}'"
    raise ValueError(f"cannot render a {kind.value} literal holding {value!r}")


def format_datetime(value: datetime) -> str:
    """ISO-8601 in UTC with ``Z``: milliseconds, or microseconds when milliseconds would lose some."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"cannot render the naive datetime {value.isoformat()}: give it a time zone")
    utc = value.astimezone(UTC)
    spec = "milliseconds" if utc.microsecond % 1000 == 0 else "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _name(name: str, what: str) -> str:
    if IDENTIFIER.fullmatch(name) is None or name in KEYWORDS:
        raise ValueError(
            f"cannot render the {what} {name!r}: expected an identifier ([A-Za-z_][A-Za-z0-9_]*) "
            "that is not a keyword"
        )
    return name


def _path(p: Path) -> str:
    if not p.segments:
        raise ValueError("cannot render an empty path")
    return "/".join(_name(s, "name") for s in p.segments)


def _rank(node: Node) -> int:
    return RANK[node.op] if isinstance(node, BinOp) else _ATOM


def _render(node: Node) -> str:
    if isinstance(node, Literal):
        return render_literal(node)
    if isinstance(node, Path):
        return _path(node)
    if isinstance(node, BinOp):
        return _binop(node)
    if isinstance(node, Not):
        return f"not({_render(node.operand)})"
    if isinstance(node, In):
        if not node.values:
            raise ValueError("cannot render 'in' with no values: balena rejects 'in ()'")
        left = _render(node.left)
        if isinstance(node.left, BinOp):
            left = f"({left})"
        return f"{left} in ({','.join(render_literal(v) for v in node.values)})"
    if isinstance(node, Call):
        arity = FUNCTIONS.get(node.name)
        if arity is None:
            raise ValueError(f"cannot render the unknown function {node.name!r}")
        if not arity[0] <= len(node.args) <= arity[1]:
            raise ValueError(f"cannot render {node.name}() with {len(node.args)} arguments")
        return f"{node.name}({','.join(_render(a) for a in node.args)})"
    if isinstance(node, Lambda):
        if node.kind not in LAMBDA_KINDS:
            raise ValueError(f"cannot render the lambda kind {node.kind!r}: expected 'any' or 'all'")
        return f"{_path(node.nav)}/{node.kind}({_name(node.var, 'lambda variable')}:{_render(node.body)})"
    if isinstance(node, Count):
        text = f"{_path(node.nav)}/$count"
        return text if node.filter is None else f"{text}($filter={_render(node.filter)})"
    raise TypeError(f"not a filter node: {node!r}")


def _binop(node: BinOp) -> str:
    # walk a chain of one operator iteratively: and_() of many terms builds a left-deep tree
    op, rank = node.op, RANK[node.op]
    rights: list[Node] = [node.right]
    first: Node = node.left
    while isinstance(first, BinOp) and first.op is op and op not in COMPARISONS:
        rights.append(first.right)
        first = first.left
    text = _render(first)
    wrap_left = _rank(first) < rank or (
        isinstance(first, BinOp)
        and ((op in LOGICAL and first.op in LOGICAL) or (op in COMPARISONS and first.op in COMPARISONS))
    )
    parts = [f"({text})" if wrap_left else text]
    for right in reversed(rights):
        text = _render(right)
        # an arithmetic operand on the right is wrapped even where the ranks allow less: balena's ranks
        # (sub < add < mod < div < mul) are not the ones a reader expects
        if _rank(right) <= rank or (isinstance(right, BinOp) and op in ARITHMETIC):
            text = f"({text})"
        parts.append(text)
    return f" {op.value} ".join(parts)
