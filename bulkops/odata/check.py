"""Name checks for a parsed ``$filter``: every field and navigation must exist in the v7 model.

``check_filter(node, resource)`` walks the tree with the resource each path starts from: the filtered
resource at the top, the navigation's target inside ``nav/any(x: …)`` (where ``x`` is in scope, and the
outer lambda variables stay in scope), the counted resource inside ``nav/$count($filter=…)``. The first
unknown name raises ``UnknownFieldError`` naming it, the resource it was looked up on, and close matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from bulkops import v7
from bulkops.errors import UnknownFieldError
from bulkops.odata.ast import BinOp, Call, Count, In, Lambda, Literal, Node, Not, Path
from bulkops.v7 import FieldDef, Navigation, ResourceDef

Scope = Mapping[str, str]  # lambda variable -> the resource it ranges over


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


def _walk(path: Path, resource: str, scope: Scope) -> tuple[FieldDef | Navigation | ResourceDef, str]:
    """What ``path`` ends on (a field, a navigation, or for a bare lambda variable its resource), and
    the name of the resource the last segment was found on."""
    segments = path.segments
    current = lookup_resource(resource)
    if segments and segments[0] in scope:
        current = lookup_resource(scope[segments[0]])
        segments = segments[1:]
        if not segments:
            return current, current.name
    end: FieldDef | Navigation | ResourceDef = current
    for i, name in enumerate(segments):
        if isinstance(end, FieldDef):
            raise UnknownFieldError(
                f"{segments[i - 1]!r} on resource {current.name!r} is a field, not a navigation:"
                f" it has no {name!r}"
            )
        if isinstance(end, Navigation):
            current = lookup_resource(end.target)
        end = _member(current, name)
    return end, current.name


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


def _check(node: Node, resource: str, scope: Scope) -> None:
    if isinstance(node, Literal):
        return
    if isinstance(node, Path):
        _walk(node, resource, scope)
    elif isinstance(node, BinOp):
        _check(node.left, resource, scope)
        _check(node.right, resource, scope)
    elif isinstance(node, Not):
        _check(node.operand, resource, scope)
    elif isinstance(node, In):
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
    """Raise ``UnknownFieldError`` for the first name in ``node`` that ``resource`` does not have."""
    _check(node, lookup_resource(resource).name, {})
