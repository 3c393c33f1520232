"""Checks of a parsed ``$filter`` against the v7 model, before anything is sent.

``check_filter(node, resource)`` walks the tree with the resource each path starts from: the filtered
resource at the top, the navigation's target inside ``nav/any(x: …)`` (where ``x`` is in scope, and the
outer lambda variables stay in scope), the counted resource inside ``nav/$count($filter=…)``. The first
problem raises:

* ``UnknownFieldError`` — a name the resource does not have, with the resource it was looked up on and
  close matches;
* ``FilterModelError`` — a path through a to-many navigation outside ``any``/``all`` (balena joins it and
  answers each row once per matching child row; the simulator refuses it), a to-many navigation compared
  as a value, a literal of another type than its field's, or a value an enumerated field never takes
  (the literal rules are in :mod:`bulkops.odata.literals`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from bulkops import v7
from bulkops.errors import FilterModelError, UnknownFieldError
from bulkops.odata.ast import COMPARISONS, BinOp, Call, Count, In, Lambda, Literal, Node, Not, Path
from bulkops.odata.literals import check_count, check_literal
from bulkops.odata.render import render
from bulkops.v7 import FieldDef, Navigation, ResourceDef

Scope = Mapping[str, str]  # lambda variable -> the resource it ranges over
Member = FieldDef | Navigation | ResourceDef


def _suggest(name: str, choices: list[str]) -> str:
    found = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return "; did you mean " + " or ".join(repr(f) for f in found) + "?" if found else ""


def lookup_resource(name: str) -> ResourceDef:
    """The resource called ``name`` (v7 name or canonical alias), else ``UnknownFieldError``."""
    try:
        return v7.resource(name)
    except KeyError:
        known = sorted(v7.RESOURCES)
        raise UnknownFieldError(
            f"unknown resource {name!r}{_suggest(name, known)}"
        ) from None


def _member(res: ResourceDef, name: str) -> FieldDef | Navigation:
    nav = res.navigations.get(name)
    if nav is not None:
        return nav
    fld = res.fields.get(name)
    if fld is not None:
        return fld
    names = sorted({*res.fields, *res.navigations})
    raise UnknownFieldError(
        f"unknown field or navigation {name!r} on resource {res.name!r}{_suggest(name, names)}"
    )


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


def _collection(nav: Navigation, owner: str) -> str:
    return (f"{nav.name!r} on resource {owner!r} is a collection ({_article(owner)} {owner} has many "
            f"{nav.target} rows)")


def _variable(target: str, scope: Scope) -> str:
    """A lambda variable for a suggestion: the initial of the target's last word, unless it is taken."""
    var = target.rsplit("_", 1)[-1][:1] or "x"
    return var if var not in scope else "x"


def _through(nav: Navigation, owner: str, path: Path, split: int, *, compared: Node | None,
             scope: Scope) -> FilterModelError:
    """The error for ``path``, which goes on through the to-many ``nav`` (its first ``split`` segments)
    to the rest: it suggests the same comparison under ``any()`` when ``compared`` is the comparison it
    stands in."""
    head, rest = path.segments[:split], path.segments[split:]
    var = _variable(nav.target, scope)
    inner = Path((var, *rest))
    body: Node | None = None
    if isinstance(compared, BinOp):
        body = BinOp(compared.op, inner if compared.left == path else compared.left,
                     inner if compared.right == path else compared.right)
    elif isinstance(compared, In):
        body = In(inner, compared.values)
    if body is not None:
        suggestion = render(Lambda(Path(head), "any", var, body))
    else:
        suggestion = f"{'/'.join(head)}/any({var}:{'/'.join(inner.segments)} …)"
    return FilterModelError(
        f"{_collection(nav, owner)}: a path through it needs any() or all() (balena answers each {owner} "
        f"once per matching row); did you mean {suggestion}?"
    )


def _walk(path: Path, resource: str, scope: Scope, compared: Node | None = None) -> tuple[Member, str]:
    """What ``path`` ends on (a field, a navigation, or for a bare lambda variable its resource), and
    the name of the resource the last segment was found on. ``compared``: the comparison ``path`` is a
    side of, for the suggestion when the path goes through a to-many navigation."""
    segments = path.segments
    current = lookup_resource(resource)
    lead: tuple[str, ...] = ()
    if segments and segments[0] in scope:
        current = lookup_resource(scope[segments[0]])
        lead, segments = segments[:1], segments[1:]
        if not segments:
            return current, current.name
    end: Member = current
    for i, name in enumerate(segments):
        if isinstance(end, FieldDef):
            raise UnknownFieldError(
                f"{segments[i - 1]!r} on resource {current.name!r} is a field, not a navigation:"
                f" it has no {name!r}"
            )
        if isinstance(end, Navigation):
            if end.many:
                raise _through(end, current.name, path, len(lead) + i, compared=compared, scope=scope)
            current = lookup_resource(end.target)
        end = _member(current, name)
    return end, current.name


def _value(path: Path, resource: str, scope: Scope, compared: Node | None = None) -> tuple[Member, str]:
    """A path used as a value: it may not end on a to-many navigation."""
    end, owner = _walk(path, resource, scope, compared)
    if isinstance(end, Navigation) and end.many:
        shown = "/".join(path.segments)
        raise FilterModelError(f"{_collection(end, owner)}: compare its rows with any() or all(), or count "
                               f"them with {shown}/$count")
    return end, owner


def _target_of(nav_path: Path, resource: str, scope: Scope, what: str) -> str:
    """The resource a lambda or ``$count`` ranges over; its path must end on a navigation."""
    if not nav_path.segments:
        return resource  # bare ``any(x: …)``: ranges over the resource itself
    end, owner = _walk(nav_path, resource, scope)
    if isinstance(end, Navigation):
        return end.target
    shown = "/".join(nav_path.segments)
    if isinstance(end, ResourceDef):
        raise UnknownFieldError(f"{what} needs a navigation, got the lambda variable {shown!r}")
    raise UnknownFieldError(f"{what} needs a navigation, but {shown!r} is a field of resource {owner!r}")


def _compare(node: BinOp, resource: str, scope: Scope) -> None:
    """``a op b`` where one side may be a literal: the other side's type decides what it may be."""
    for side, other in ((node.left, node.right), (node.right, node.left)):
        if isinstance(side, Path):
            end, owner = _value(side, resource, scope, node)
            if isinstance(other, Literal) and not isinstance(end, ResourceDef):
                check_literal(end, owner, other)
        elif isinstance(side, Count) and isinstance(other, Literal):
            _check(side, resource, scope)
            check_count("/".join(side.nav.segments), other)
        else:
            _check(side, resource, scope)


def _check(node: Node, resource: str, scope: Scope) -> None:
    if isinstance(node, Literal):
        return
    if isinstance(node, Path):
        _value(node, resource, scope)
    elif isinstance(node, BinOp) and node.op in COMPARISONS:
        _compare(node, resource, scope)
    elif isinstance(node, BinOp):
        _check(node.left, resource, scope)
        _check(node.right, resource, scope)
    elif isinstance(node, Not):
        _check(node.operand, resource, scope)
    elif isinstance(node, In):
        if isinstance(node.left, Path):
            end, owner = _value(node.left, resource, scope, node)
            if not isinstance(end, ResourceDef):
                for value in node.values:
                    check_literal(end, owner, value)
        else:
            _check(node.left, resource, scope)
    elif isinstance(node, Call):
        for arg in node.args:
            _check(arg, resource, scope)
    elif isinstance(node, Lambda):
        target = _target_of(node.nav, resource, scope, f"{node.kind}()")
        _check(node.body, resource, {**scope, node.var: target})
    elif isinstance(node, Count):
        target = _target_of(node.nav, resource, scope, "$count")
        if node.filter is not None:
            _check(node.filter, target, scope)


def check_filter(node: Node, resource: str) -> None:
    """Raise ``UnknownFieldError`` for the first name in ``node`` that ``resource`` does not have, and
    ``FilterModelError`` for the first part that does not fit the v7 model."""
    _check(node, lookup_resource(resource).name, {})
