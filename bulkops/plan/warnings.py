"""The warnings a preview shows, each with its numbers: the plan's own (made when it was planned), made
precise where the context knows more, and those only the context can tell — a pin that downgrades, a
release that is not ``success``, pins a move clears, listed targets that matched nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from bulkops.model import ActionType, ChangeKind, Plan, PlanItem
from bulkops.plan.context import PlanContext, Row
from bulkops.plan.guards import noun

__all__ = ["plan_warnings"]

RESTARTS = frozenset({ActionType.SET_ENV, ActionType.REMOVE_ENV, ActionType.SET_CONFIG,
                      ActionType.REMOVE_CONFIG})
PIN_FIELDS = ("is_pinned_on__release", "should_be_running__release")


def _active(plan: Plan) -> Iterator[PlanItem]:
    """The items that change something, one at a time (a plan's items are read from disk)."""
    return (it for it in plan.items if it.kind is not ChangeKind.NOOP)


def _shown(counts: Counter[str], limit: int = 4) -> str:
    parts = [f"{k} ×{n}" for k, n in counts.most_common(limit)]
    rest = len(counts) - limit
    return ", ".join(parts) + (f", and {rest} more" if rest > 0 else "")


def _fleet_restarts(plan: Plan, ctx: PlanContext) -> str | None:
    """``1,031 devices of 1 fleet (acme/gateway) will restart services`` for a fleet-level variable."""
    rows = [ctx.rows.get(it.target_id) for it in _active(plan)]  # one per fleet
    counts = [r.devices for r in rows if r is not None]
    if len(counts) != len(rows) or any(c is None for c in counts):
        return None
    devices = sum(c or 0 for c in counts)
    slugs = ", ".join(sorted(r.fleet for r in rows if r is not None)[:5]) + (", …" if len(rows) > 5 else "")
    return f"{devices:,} {'device' if devices == 1 else 'devices'} of {noun('application', len(rows))} " \
           f"({slugs}) will restart services"


def _after_release(plan: Plan, it: PlanItem, ctx: PlanContext, row: Row | None) -> int | None:
    """The release a target will run after the item: its new pin, or (unpinned) its fleet's target."""
    after = it.after or {}
    for name in PIN_FIELDS:
        if name in after:
            value = after[name]
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if plan.target_resource == "device" and row is not None:
                fleet_id = plan.fleet_ids.get(row.fleet)
                return ctx.fleet_targets.get(fleet_id) if fleet_id is not None else None
    return None


def _before_release(plan: Plan, it: PlanItem, row: Row | None) -> int | None:
    if plan.target_resource == "application":
        value = (it.before or {}).get("should_be_running__release")
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return row.running if row is not None else None


def release_warnings(plan: Plan, ctx: PlanContext) -> list[str]:
    """Downgrades and releases that are not fit to run, counted per release."""
    if not any(name in (it.after or {}) for it in _active(plan) for name in PIN_FIELDS):
        return []
    res = plan.target_resource
    down: Counter[str] = Counter()
    unfit: dict[str, Counter[int]] = {"status": Counter(), "invalidated": Counter(), "draft": Counter()}
    followers = 0
    for it in _active(plan):
        row = ctx.rows.get(it.target_id)
        after = _after_release(plan, it, ctx, row)
        target = ctx.releases.get(after) if after is not None else None
        if target is None:
            continue
        if target.status != "success":
            unfit["status"][target.id] += 1
        if target.invalidated:
            unfit["invalidated"][target.id] += 1
        if not target.final:
            unfit["draft"][target.id] += 1
        before = _before_release(plan, it, row)
        now = ctx.releases.get(before) if before is not None else None
        if now is not None and now.semver and target.semver and target.semver < now.semver:
            down[f"{now.version} → {target.version}"] += 1
            followers += (row.devices or 0) if row is not None and res == "application" else 0
    out: list[str] = []
    if down:
        who = noun(res, sum(down.values()))
        also = f", moving up to {followers:,} devices that follow them" if res == "application" else ""
        out.append(f"downgrade: {who} will go back to an older release ({_shown(down)}){also}")
    for rel_id, n in unfit["status"].most_common():
        rel = ctx.releases[rel_id]
        out.append(f"{noun(res, n)} would run release {rel.version}, whose status is {rel.status!r}: balena "
                   "refuses a pin to a release that is not 'success'")
    for rel_id, n in unfit["invalidated"].most_common():
        out.append(f"{noun(res, n)} would run release {ctx.releases[rel_id].version}, which is invalidated")
    for rel_id, n in unfit["draft"].most_common():
        out.append(f"{noun(res, n)} would run release {ctx.releases[rel_id].version}, a draft (not final)")
    return out


def _move_pins(plan: Plan, ctx: PlanContext, active: Iterable[PlanItem]) -> list[str]:
    if plan.action.type is not ActionType.MOVE or not ctx.complete:
        return []
    pinned = Counter(ctx.release_name(r.pinned) for it in active
                     if (r := ctx.rows.get(it.target_id)) is not None and r.pinned is not None)
    if not pinned:
        return []
    n = sum(pinned.values())
    be, pins = ("is", "its pin") if n == 1 else ("are", "their pins")
    return [f"{noun('device', n)} of them {be} pinned ({_shown(pinned)}): the move clears {pins}"]


def plan_warnings(plan: Plan, ctx: PlanContext | None) -> list[str]:
    """Every warning of the preview, in order."""
    if ctx is None:
        return list(plan.warnings)
    out: list[str] = []
    fleets = sum(1 for _ in _active(plan)) if plan.target_resource == "application" else 0
    plain = f"every device of {noun('application', fleets)} will restart services"
    for w in plan.warnings:
        numbered = _fleet_restarts(plan, ctx) if w == plain and plan.action.type in RESTARTS else None
        out.append(numbered or w)
    out += release_warnings(plan, ctx)
    out += _move_pins(plan, ctx, _active(plan))
    if plan.action.type is ActionType.MOVE and ctx.service_var_devices:
        n = ctx.service_var_devices
        have = "has" if n == 1 else "have"
        out.append(f"{noun('device', n)} of them {have} device service variables, which the move deletes with"
                   " the old fleet's service installs (device env vars and tags stay)")
    if ctx.unmatched:
        what = ctx.listed_kind
        shown = ", ".join(ctx.unmatched[:5]) + (", …" if len(ctx.unmatched) > 5 else "")
        n = len(ctx.unmatched)
        be = "is" if n == 1 else "are"
        out.append(f"{n} of the {ctx.listed} listed {what} {be} not in the plan (no such row, not visible to"
                   f" this API key, or outside the fleet and filter): {shown}")
    return out
