"""What one SQL compilation works with: operator tables, the caller's visibility, the names in reach,
and the literal conversions (numbers, ISO-8601 durations)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from bulkops import v7
from bulkops.odata.ast import Op
from bulkops.sim.sqlfns import CompileError
from bulkops.v7 import Navigation, ResourceDef

_COMPARE = {Op.EQ: "IS", Op.NE: "IS NOT", Op.GT: ">", Op.GE: ">=", Op.LT: "<", Op.LE: "<="}
_ARITH = {Op.ADD: "+", Op.SUB: "-", Op.MUL: "*", Op.DIV: "/", Op.MOD: "%"}
_INT_TEXT = re.compile(r"^[+-]?\d+$")
_DURATION = re.compile(
    r"^(-)?P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?"
    r"(?:(\d+(?:\.\d+)?)S)?)?$"
)


class Visibility(Protocol):
    """What the caller may see: a SQL condition on ``alias`` for rows of ``resource``, or None (all)."""

    def condition(self, resource: str, alias: str) -> tuple[str, list[Any]] | None: ...


@dataclass(slots=True)
class Scope:
    """Names in reach while compiling: lambda variables and the resource unprefixed paths start from."""

    default: tuple[ResourceDef, str]
    variables: dict[str, tuple[ResourceDef, str]] = field(default_factory=dict)


def _num_param(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def duration_seconds(text: str) -> float:
    """Seconds of an ISO-8601 duration ``[-]P[nD][T[nH][nM][nS]]``; CompileError if malformed."""
    m = _DURATION.match(text)
    if m is None or not any(m.groups()[1:]):
        raise CompileError(f"bad duration {text!r}")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups()[1:])
    total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    return -total if m.group(1) else total


def target_resource(nav: Navigation) -> ResourceDef:
    try:
        return v7.RESOURCES[nav.target]
    except KeyError:
        raise CompileError(f"navigation {nav.name} leads to {nav.target}, which is not served") from None
