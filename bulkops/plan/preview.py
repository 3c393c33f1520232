"""What a plan will do, for a human (a table) or a program (JSON).

Without a context (:mod:`bulkops.plan.context`) the preview names targets by uuid or slug and shows raw
values. With one — as the CLI always shows it — every sample row names the device (name, fleet, online
or last seen), values are in the user's terms (release versions, fleet slugs), the current values are
tallied, targets are counted per fleet, the warnings carry their numbers, and the job's description
and the API URL head the preview.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from bulkops.model import Action, ActionType, ChangeKind, Plan, PlanItem
from bulkops.plan import stages
from bulkops.plan.guards import noun
from bulkops.v7.actions import is_child, key_value

if TYPE_CHECKING:
    from bulkops.plan.context import PlanContext, Row

SAMPLES = 10
ABSENT = "(absent)"
FOLLOWS = "follows fleet"
TALLY_SHOWN = 6


def describe_action(action: Action) -> str:
    t = action.type
    if t is ActionType.SET_SERVICE_ENV:
        return f"{t.value} {action.service}:{action.name}={action.value}"
    if t is ActionType.REMOVE_SERVICE_ENV:
        return f"{t.value} {action.service}:{action.name}"
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


def _release(ctx: PlanContext | None, value: Any, *, fleet_level: bool) -> str:
    if value is None:
        return "tracks latest" if fleet_level else FOLLOWS
    return ctx.release_name(value) if ctx is not None else f"release #{value}"


def value_text(plan: Plan, values: Mapping[str, Any] | None, ctx: PlanContext | None = None) -> str:
    """One side of a change in the user's terms: ``warn``, ``(absent)``, ``acme/gateway``, ``1.5.0``."""
    if values is None:
        return ABSENT
    if is_child(plan.action):
        return _show(values.get("value"))
    if plan.action.type is ActionType.MOVE and "belongs_to__application" in values:
        names = {v: k for k, v in plan.fleet_ids.items()}
        fleet = values["belongs_to__application"]
        return names.get(fleet, f"fleet #{fleet}")
    if ctx is not None and ("is_pinned_on__release" in values or "should_be_running__release" in values):
        if "is_pinned_on__release" in values:
            return _release(ctx, values["is_pinned_on__release"], fleet_level=False)
        if values.get("should_track_latest_release") is True:
            return "tracks latest"
        return _release(ctx, values["should_be_running__release"], fleet_level=True)
    if ctx is not None and set(values) == {"should_track_latest_release"}:
        return "tracks latest" if values["should_track_latest_release"] else "fixed release"
    return ", ".join(f"{k}={_show(v)}" for k, v in values.items()) or "(row)"


def change_text(plan: Plan, item: PlanItem, ctx: PlanContext | None = None) -> str:
    """``info → debug``, ``(absent) → debug``, ``acme/gateway → acme/gateway-next``, ``1.5.0 → 1.4.0``."""
    if item.kind is ChangeKind.DELETE and not is_child(plan.action):
        return f"{plan.target_resource} → deleted"
    return f"{value_text(plan, item.before, ctx)} → {value_text(plan, item.after, ctx)}"


def samples(plan: Plan, limit: int = SAMPLES) -> list[PlanItem]:
    """Up to ``limit`` items to show, spread over the kinds that send something (one pass over the items:
    the first ``limit`` of each kind and the first ``2 × limit`` that send something are all it keeps)."""
    order = (ChangeKind.CHANGE, ChangeKind.CREATE, ChangeKind.DELETE)
    first: dict[ChangeKind, list[PlanItem]] = {k: [] for k in order}
    head: list[PlanItem] = []
    for it in plan.items:
        if it.kind in first:
            if len(first[it.kind]) < limit:
                first[it.kind].append(it)
            if len(head) < 2 * limit:
                head.append(it)
    kinds = [k for k in order if first[k]]
    picked: list[PlanItem] = []
    per_kind = max(1, limit // max(1, len(kinds)))
    for k in kinds:
        picked.extend(first[k][:per_kind])
    for it in head:
        if len(picked) >= limit:
            break
        if it not in picked:
            picked.append(it)
    return sorted(picked[:limit], key=lambda it: it.target_id)


def tally(plan: Plan, ctx: PlanContext | None = None) -> list[tuple[str, int]]:
    """The targets' current values, most common first: ``[("(absent)", 336), ("warn", 120)]``."""
    if plan.action.type is ActionType.DELETE:
        return []
    return Counter(value_text(plan, it.before, ctx) for it in plan.items).most_common()


def _wanted(plan: Plan, ctx: PlanContext | None) -> str:
    after = next((it.after for it in plan.items if it.after is not None), None)
    return value_text(plan, after, ctx) if after is not None else "removed"


def seen(row: Row, now: datetime) -> str:
    """``online``, ``offline, seen 3 d ago``, ``offline, never seen``."""
    if row.online:
        return "online"
    if not row.last_seen:
        return "offline, never seen"
    try:
        then = datetime.fromisoformat(str(row.last_seen).replace("Z", "+00:00"))
    except ValueError:
        return "offline"
    ago = max(0.0, (now - then).total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if ago >= size:
            return f"offline, seen {int(ago // size)} {unit} ago"
    return "offline, seen just now"


def _who(plan: Plan, item: PlanItem, ctx: PlanContext | None) -> list[str]:
    row = ctx.rows.get(item.target_id) if ctx is not None else None
    if row is None:
        return [item.label] if ctx is None else [item.label, "(gone)"]
    if plan.target_resource == "application":
        return [row.fleet or item.label, f"{row.devices:,} devices" if row.devices is not None else ""]
    return [row.name or "(unnamed)", row.uuid[:7], row.fleet, seen(row, plan.created_at)]


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1] for r in rows]


def _fleets_line(ctx: PlanContext) -> str:
    return " · ".join(f"{slug} {n:,}" + (f" ({a:,} to apply)" if a != n else "")
                      for slug, (n, a) in ctx.per_fleet.items())


def preview_json(plan: Plan, notes: Sequence[str] = (), ctx: PlanContext | None = None) -> dict[str, Any]:
    from bulkops.plan.warnings import plan_warnings  # noqa: PLC0415 - it imports the context, which imports this

    out: dict[str, Any] = {
        "plan_id": plan.plan_id,
        "job": plan.job_name,
        "description": ctx.description if ctx is not None else "",
        "api_url": plan.api_url,
        "action": describe_action(plan.action),
        "undo_of": plan.undo_of or None,
        "target_resource": plan.target_resource,
        "filter": plan.compiled_filter,
        "targets": len(plan.items),
        "population": plan.population,
        "counts": plan.counts(),
        "fleets": list(plan.fleets),
        "per_fleet": {k: {"targets": n, "to_apply": a} for k, (n, a) in ctx.per_fleet.items()} if ctx else {},
        "current_values": [{"value": v, "count": n} for v, n in tally(plan, ctx)],
        "wanted": _wanted(plan, ctx),
        "irreversible": plan.irreversible,
        "warnings": plan_warnings(plan, ctx),
        "notes": list(notes),
        "samples": [],
        "rollout": stages.preview_json(plan),
    }
    for it in samples(plan):
        row = ctx.rows.get(it.target_id) if ctx is not None else None
        out["samples"].append({
            "id": it.target_id, "label": it.label, "kind": it.kind.value, "before": it.before,
            "after": it.after, "change": change_text(plan, it, ctx), "name": row.name if row else None,
            "fleet": row.fleet if row else None, "online": row.online if row else None,
            "last_seen": row.last_seen if row else None,
        })
    return out


def preview_text(plan: Plan, notes: Sequence[str] = (), ctx: PlanContext | None = None) -> str:
    from bulkops.plan.warnings import plan_warnings  # noqa: PLC0415 - it imports the context, which imports this

    counts = plan.counts()
    active = sum(n for kind, n in counts.items() if kind != ChangeKind.NOOP.value)
    lines = [f"plan     {plan.plan_id}   job {plan.job_name}"]
    if ctx is not None and ctx.description:
        lines.extend(f"about    {line}" if i == 0 else f"         {line}"
                     for i, line in enumerate(ctx.description.strip().splitlines()[:5]))
    if ctx is not None:
        lines.append(f"api      {ctx.api_url}")
    lines += [
        f"action   {'undo of run ' + plan.undo_of + ': ' if plan.undo_of else ''}"
        f"{describe_action(plan.action)} on {plan.target_resource}",
        f"filter   {plan.compiled_filter or _no_filter(ctx)}",
    ]
    if ctx is not None and ctx.listed:
        source = f" from {ctx.listed_from}" if ctx.listed_from else ""
        lines.append(f"listed   {ctx.listed:,} {ctx.listed_kind}{source}")
    fleets = [f for f in plan.fleets if f != plan.action.to_fleet]
    lines.append(f"targets  {noun(plan.target_resource, len(plan.items))} of {plan.population:,}"
                 + (f" in {', '.join(fleets)}" if fleets and ctx is None else ""))
    if ctx is not None and ctx.per_fleet:
        lines.append(f"fleets   {_fleets_line(ctx)}")
    if plan.action.to_fleet:
        lines.append(f"to       {plan.action.to_fleet}")
    lines.append("counts   " + "   ".join(f"{k} {counts[k.value]}" for k in ChangeKind))
    values = tally(plan, ctx)
    if ctx is not None and values and active:
        shown = " · ".join(f"{v} {n:,}" for v, n in values[:TALLY_SHOWN])
        more = f" · {len(values) - TALLY_SHOWN} other values" if len(values) > TALLY_SHOWN else ""
        lines.append(f"now      {shown}{more}  → {_wanted(plan, ctx)}")
    shown_items = samples(plan)
    if shown_items:
        lines.append("sample")
        rows = [[it.kind.value, *_who(plan, it, ctx), change_text(plan, it, ctx)] for it in shown_items]
        lines.extend(f"  {line}" for line in _columns(rows))
        rest = active - len(shown_items)
        if rest > 0:
            lines.append(f"  … and {rest} more")
    else:
        lines.append("nothing to do: every target is already as wanted")
    lines.extend(stages.preview_lines(plan))
    lines.extend(f"note     {n}" for n in notes)
    lines.extend(f"warning  {w}" for w in plan_warnings(plan, ctx))
    return "\n".join(lines)


def _no_filter(ctx: PlanContext | None) -> str:
    if ctx is not None and ctx.listed:
        return "(none besides the listed targets)"
    return "(none: every row the API key can see)"


def to_json_bytes(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2)
