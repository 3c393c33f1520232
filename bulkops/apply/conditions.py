"""What every write carries in its ``$filter`` besides the ids it pins: the precondition the operator saw.

* the **before-values** of what it changes: ``value eq 'info'``, one term per before-value group,
  ``(id in (1,3) and value eq 'a') or (id in (2) and value eq 'b')``;
* the job's **target selection** as the plan fixed it (fleets, the ``offline_for`` cut-off, the job's
  filter): on a target row as it is, on a child row through its owner, ``device/any(o:o/…)``.

The server applies the write only to rows that still match, in the same request, so the check is
atomic: a row changed since the plan — even an instant before the write — is not touched. The
read-back then tells which rows were left alone, and :mod:`bulkops.apply.drift` says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bulkops import v7
from bulkops.odata.ast import (
    COMPARISONS,
    BinOp,
    Call,
    Count,
    In,
    Lambda,
    Literal,
    Node,
    Not,
    Op,
    Path,
    and_,
    eq,
    in_,
    or_,
)
from bulkops.odata.parser import parse
from bulkops.v7 import FieldType


class Uncomparable(ValueError):
    """A before-value that no ``$filter`` can compare (a JSON object or list)."""


def _typed(resource: str, name: str, raw: Any) -> Any:
    """A before-value as a filter literal: a datetime field's ISO text as a datetime literal."""
    value = Decimal(str(raw)) if isinstance(raw, float) else raw
    if value is not None and not isinstance(value, str | int | bool | Decimal):
        raise Uncomparable(f"{name} = {str(raw)[:60]}")
    try:
        kind = v7.field_of(resource, name).type
    except KeyError:
        return value
    if kind is FieldType.DATETIME and isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


def before_condition(resource: str, before: Mapping[str, Any] | None) -> Node | None:
    """``f1 eq v1 and f2 eq v2`` for the planned before-values; None when there are none (a device
    delete: the selection is its precondition). :class:`Uncomparable` for a value no filter compares."""
    if not before:
        return None
    return and_(*[eq(name, _typed(resource, name, raw)) for name, raw in sorted(before.items())])


def write_filter(groups: Sequence[tuple[Sequence[int], Node | None]], guard: Node | None) -> Node:
    """The ``$filter`` of one write: per group of rows sharing a before-value ``id in (…) and <before>``,
    the groups OR'd, then the target selection AND'd to the whole."""
    terms = [and_(in_("id", ids), cond) for ids, cond in groups]
    return and_(or_(*terms), guard)


def _bound_vars(node: Node) -> set[str]:
    if isinstance(node, Lambda):
        return {node.var} | _bound_vars(node.body)
    if isinstance(node, BinOp):
        return _bound_vars(node.left) | _bound_vars(node.right)
    if isinstance(node, Not):
        return _bound_vars(node.operand)
    if isinstance(node, In):
        return _bound_vars(node.left)
    if isinstance(node, Call):
        return set().union(*(_bound_vars(a) for a in node.args))
    return set()


def _prefixed(node: Node, var: str, bound: frozenset[str]) -> Node:
    """``node`` with every path of the outer resource read through the lambda variable ``var``."""

    def path(p: Path) -> Path:
        return p if p.segments[0] in bound else Path((var, *p.segments))

    if isinstance(node, Path):
        return path(node)
    if isinstance(node, BinOp):
        return BinOp(node.op, _prefixed(node.left, var, bound), _prefixed(node.right, var, bound))
    if isinstance(node, Not):
        return Not(_prefixed(node.operand, var, bound))
    if isinstance(node, In):
        return In(_prefixed(node.left, var, bound), node.values)
    if isinstance(node, Call):
        return Call(node.name, tuple(_prefixed(a, var, bound) for a in node.args))
    if isinstance(node, Lambda):
        return Lambda(path(node.nav), node.kind, node.var, _prefixed(node.body, var, bound | {node.var}))
    if isinstance(node, Count):
        return Count(path(node.nav), node.filter)  # a $count's own filter reads the counted rows
    return node


@dataclass(frozen=True, slots=True)
class Selection:
    """The job's target selection as the plan fixed it, on ``resource`` (``device`` or ``application``)."""

    resource: str
    tree: Node

    @classmethod
    def of(cls, resource: str, precondition: str) -> Selection | None:
        """The selection a plan stored (its ``precondition``); None when the plan has none (an undo)."""
        return cls(resource, parse(precondition)) if precondition else None

    def guard(self, written: str) -> Node:
        """The selection as a condition on rows of ``written``: the target rows themselves, or child rows
        (``device_environment_variable``, ``application_tag``, …) through their owner link."""
        if written == self.resource:
            return self.tree
        taken = _bound_vars(self.tree)
        var = next(v for v in ("o", *(f"o{n}" for n in range(1, len(taken) + 2))) if v not in taken)
        return Lambda(Path((self.resource,)), "any", var, _prefixed(self.tree, var, frozenset()))

    def conjuncts(self) -> list[Node]:
        """The selection's top-level ``and`` terms, in order (``belongs_to__application in (2)``,
        ``is_online eq false``, …): each one a reason a target may no longer match."""
        out: list[Node] = []
        todo = [self.tree]
        while todo:
            node = todo.pop()
            if isinstance(node, BinOp) and node.op is Op.AND:
                todo += [node.right, node.left]
            else:
                out.append(node)
        return out


def simple_field(node: Node) -> str | None:
    """The field a term compares when it is ``field <op> literal`` or ``field in (…)``, else None."""
    left = node.left if isinstance(node, BinOp | In) else None
    right_ok = isinstance(node, In) or (
        isinstance(node, BinOp) and node.op in COMPARISONS and isinstance(node.right, Literal))
    if isinstance(left, Path) and len(left.segments) == 1 and right_ok:
        return left.segments[0]
    return None
