"""What a plan will do, for a human (a table) or a program (JSON)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from bulkops.model import Action, ActionType, ChangeKind, Plan, PlanItem
from bulkops.plan import stages
from bulkops.plan.guards import noun
from bulkops.v7.actions import is_child, key_value

SAMPLES = 10
ABSENT = "(absent)"


def describe_action(action: Action) -> str:
    t = action.type
    if t in {ActionType.SET_ENV, ActionType.SET_CONFIG, ActionType.SET_TAG}:
        return f"{t.value} {key_value(action)}={action.value}"
    if t in {ActionType.REMOVE_ENV, ActionType.REMOVE_CONFIG, ActionType.REMOVE_TAG}:
        return f"{t.value} {key_value(action)}"
    if t is ActionType.PATCH:
        return "patch " + ", ".join(f"{k}={_show(v)}" for k, v in action.fields.items())
    if t is ActionType.MOVE:
        return f"move to {action.to_fleet}"
    if t is ActionType.PIN:
        return f"pin to release {action.release}"
    return t.value


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value if value else '""'
    return orjson.dumps(value).decode()


def _values(values: Mapping[str, Any] | None, child: bool) -> str:
    if values is None:
        return ABSENT
    if child:
        return _show(values.get("value"))
    return ", ".join(f"{k}={_show(v)}" for k, v in values.items()) or "(row)"


def change_text(plan: Plan, item: PlanItem) -> str:
    """``info → debug``, ``(absent) → debug``, ``belongs_to__application=3 → belongs_to__application=7``."""
    child = is_child(plan.action)
    if item.kind is ChangeKind.DELETE and not child:
        return f"{plan.target_resource} → deleted"
    if plan.action.type is ActionType.MOVE and item.before is not None and item.after is not None:
        names = {v: k for k, v in plan.fleet_ids.items()}
        old, new = item.before["belongs_to__application"], item.after["belongs_to__application"]
        return f"{names.get(old, old)} → {names.get(new, new)}"
    return f"{_values(item.before, child)} → {_values(item.after, child)}"


def samples(plan: Plan, limit: int = SAMPLES) -> list[PlanItem]:
    """Up to ``limit`` items to show, spread over the kinds that send something."""
    active = [it for it in plan.items if it.kind is not ChangeKind.NOOP]
    kinds = [k for k in (ChangeKind.CHANGE, ChangeKind.CREATE, ChangeKind.DELETE)
             if any(it.kind is k for it in active)]
    picked: list[PlanItem] = []
    per_kind = max(1, limit // max(1, len(kinds)))
    for k in kinds:
        picked.extend([it for it in active if it.kind is k][:per_kind])
    for it in active:
        if len(picked) >= limit:
            break
        if it not in picked:
            picked.append(it)
    return sorted(picked[:limit], key=lambda it: it.target_id)


def preview_json(plan: Plan, notes: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "plan_id": plan.plan_id,
        "job": plan.job_name,
        "action": describe_action(plan.action),
        "undo_of": plan.undo_of or None,
        "target_resource": plan.target_resource,
        "filter": plan.compiled_filter,
        "targets": len(plan.items),
        "population": plan.population,
        "counts": plan.counts(),
        "fleets": list(plan.fleets),
        "irreversible": plan.irreversible,
        "warnings": list(plan.warnings),
        "notes": list(notes),
        "samples": [
            {"id": it.target_id, "label": it.label, "kind": it.kind.value, "before": it.before,
             "after": it.after}
            for it in samples(plan)
        ],
        "rollout": stages.preview_json(plan),
    }


def preview_text(plan: Plan, notes: Sequence[str] = ()) -> str:
    counts = plan.counts()
    lines = [
        f"plan     {plan.plan_id}   job {plan.job_name}",
        f"action   {'undo of run ' + plan.undo_of + ': ' if plan.undo_of else ''}"
        f"{describe_action(plan.action)} on {plan.target_resource}",
        f"filter   {plan.compiled_filter or '(none: every row the API key can see)'}",
        f"targets  {noun(plan.target_resource, len(plan.items))} of {plan.population}"
        + (f" in {', '.join(plan.fleets)}" if plan.fleets else ""),
        "counts   " + "   ".join(f"{k} {counts[k.value]}" for k in ChangeKind),
    ]
    shown = samples(plan)
    if shown:
        width = max(len(it.label) for it in shown)
        lines.append("sample")
        lines.extend(f"  {it.kind.value:<7} {it.label:<{width}}  {change_text(plan, it)}" for it in shown)
        rest = sum(1 for it in plan.items if it.kind is not ChangeKind.NOOP) - len(shown)
        if rest > 0:
            lines.append(f"  … and {rest} more")
    else:
        lines.append("nothing to do: every target is already as wanted")
    lines.extend(stages.preview_lines(plan))
    lines.extend(f"note     {n}" for n in notes)
    lines.extend(f"warning  {w}" for w in plan.warnings)
    return "\n".join(lines)


def to_json_bytes(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2)
