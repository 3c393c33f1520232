"""Job → Plan: resolve names, page the targets, read the current values, diff, guard.

All reads are GETs through one :class:`~bulkops.client.Client`: fleet slugs (1 GET), the move
destination (1 GET), releases (1 GET), the targets (keyset pages of 1,000), the current child rows
(1 GET per page of targets: ``name eq … and device in (…page ids…)``), the fleet slugs of the targets
(1 GET), the population (1 ``$count``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bulkops.api.urls import URL_BUDGET
from bulkops.errors import BadResponseError, InputError, NotFoundError
from bulkops.journal.runs import new_id
from bulkops.log import get_logger
from bulkops.model import Action, ActionType, ChangeKind, Job, Plan, PlanItem
from bulkops.odata.ast import BinOp, Call, Node, Op, and_, eq, in_, lit, path
from bulkops.odata.parser import parse
from bulkops.odata.render import render
from bulkops.plan import diff, listed, service
from bulkops.plan.diff import Resolved
from bulkops.plan.file import item_spool, read_plan, write_plan
from bulkops.plan.guards import check_allowed, check_expect, noun
from bulkops.plan.stages import assign_stages
from bulkops.v7 import actions

if TYPE_CHECKING:
    from bulkops.api.client import Client

__all__ = ["compile_filter", "make_plan", "read_plan", "write_plan"]

log = get_logger("bulkops.plan")
PAGE_SIZE = 1000
SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def compile_filter(job: Job, fleet_ids: Mapping[str, int], now: datetime) -> Node | None:
    """The one filter tree the job's target means: fleets AND offline_for AND the user filter."""
    t = job.target
    parts: list[Node | None] = []
    if fleet_ids:
        field = "id" if t.resource == "application" else "belongs_to__application"
        parts.append(in_(field, sorted(fleet_ids.values())))
    if t.offline_for is not None:
        cutoff = (now - t.offline_for).astimezone(UTC)
        parts.append(eq("is_online", False))
        parts.append(BinOp(Op.LT, path("last_connectivity_event"), lit(cutoff)))
    if t.filter:
        parts.append(parse(t.filter))
    return and_(*parts) if any(p is not None for p in parts) else None


async def resolve_fleets(client: Client, slugs: Iterable[str]) -> dict[str, int]:
    """Fleet slugs → ids in one GET; a slug that resolves to nothing is a NotFoundError."""
    wanted = [s.lower() for s in slugs]
    if not wanted:
        return {}
    rows = await client.get("application", filter=in_("slug", wanted), select=("id", "slug"))
    found = {str(r["slug"]).lower(): int(r["id"]) for r in rows}
    missing = [s for s in wanted if s not in found]
    if missing:
        raise NotFoundError(
            f"fleet {', '.join(repr(m) for m in missing)} not found (or not visible to this API key)"
        )
    return {s: found[s] for s in wanted}


async def resolve_releases(client: Client, spec: str, fleets: Mapping[int, str]) -> dict[int, int]:
    """A release given by commit (or a unique prefix of one) or semver → its id in each fleet."""
    if not fleets:
        return {}
    m = SEMVER.match(spec)
    cond: Node
    if m:
        cond = and_(eq("semver_major", int(m[1])), eq("semver_minor", int(m[2])),
                    eq("semver_patch", int(m[3])))
    elif len(spec) >= 32:
        cond = eq("commit", spec)
    else:
        cond = Call("startswith", (path("commit"), lit(spec)))
    rows = await client.get(
        "release",
        filter=and_(in_("belongs_to__application", sorted(fleets)), cond, eq("status", "success")),
        select=("id", "commit", "semver", "belongs_to__application", "revision"),
        orderby="id asc",
    )
    out: dict[int, int] = {}
    for fleet_id, slug in sorted(fleets.items()):
        mine = [r for r in rows if actions.normalize(r.get("belongs_to__application")) == fleet_id]
        if m and spec.lstrip("v") != f"{m[1]}.{m[2]}.{m[3]}":
            mine = [r for r in mine if str(r.get("semver", "")) == spec.lstrip("v")] or mine
        if not mine:
            raise NotFoundError(f"release {spec!r} not found in fleet {slug} (no successful release matches)")
        commits = {r["commit"] for r in mine}
        if not m and len(commits) > 1:
            raise InputError(
                f"release {spec!r} is ambiguous in fleet {slug}: it matches {len(commits)} commits; "
                "give more characters"
            )
        out[fleet_id] = int(mine[-1]["id"])  # the newest of equal versions
    return out


async def _fleet_slugs(client: Client, ids: Iterable[int], known: Mapping[str, int]) -> dict[int, str]:
    by_id = {v: k for k, v in known.items()}
    missing = sorted(set(ids) - set(by_id))
    if missing:
        rows = await client.get("application", filter=in_("id", missing), select=("id", "slug"))
        by_id.update({int(r["id"]): str(r["slug"]) for r in rows})
    return by_id


async def _more_releases(client: Client, act: Action, resolved: Resolved, fleets: Iterable[int],
                         known: dict[str, int]) -> Resolved:
    """``resolved`` with the release of the pin in each of ``fleets`` that it does not have yet (fleets
    of targets selected by filter, not named in the job); ``known`` (slug -> id) learns their slugs."""
    assert act.release is not None
    slugs = await _fleet_slugs(client, fleets, known)
    known.update({slug: fid for fid, slug in slugs.items()})
    missing = {f: slugs.get(f, str(f)) for f in fleets if f not in resolved.releases}
    more = await resolve_releases(client, act.release, missing)
    return Resolved(resolved.fleet_ids, resolved.move_to, {**resolved.releases, **more})


async def _read_children(
    client: Client, job: Job, page: Sequence[Mapping[str, Any]]
) -> dict[int, Mapping[str, Any]]:
    """The current child rows (env var / config var / tag named by the action) of one page of targets:
    one GET for the whole page unless its id list would not fit the URL budget."""
    owner = job.target.resource
    resource = actions.child_resource(job.action, owner)
    name = eq(actions.key_field(job.action), actions.key_value(job.action))
    pending = [[int(r["id"]) for r in page]]
    out: dict[int, Mapping[str, Any]] = {}
    while pending:
        ids = pending.pop()
        filt = and_(name, in_(owner, ids))
        if len(ids) > 1 and client.url_length(resource, filt) > URL_BUDGET:
            pending += [ids[: len(ids) // 2], ids[len(ids) // 2 :]]
            continue
        select = ("id", owner, "value")
        asked = set(ids)
        async for rows in client.pages(resource, filter=filt, select=select, page_size=len(ids) + 1):
            for row in rows:
                owner_id = actions.normalize(row.get(owner))
                if not isinstance(owner_id, int) or isinstance(owner_id, bool) or owner_id not in asked:
                    raise BadResponseError(
                        f"unexpected answer: a {resource} row whose {owner} is {str(row.get(owner))[:40]!r}, "
                        f"not one of the {len(ids)} ids asked for", method="GET", url=f"/{resource}")
                out[owner_id] = row
    return out


def warnings_for(action: Action, res: str, items: Sequence[PlanItem]) -> list[str]:
    """What the preview must say before anything is sent: restarts, irreversibility, moves."""
    a, to_fleet = action, action.to_fleet
    n = sum(1 for it in items if it.kind is not ChangeKind.NOOP)
    out: list[str] = []
    if not n:
        return out
    if a.type in {ActionType.SET_ENV, ActionType.REMOVE_ENV, ActionType.SET_CONFIG, ActionType.REMOVE_CONFIG}:
        if res == "device":
            out.append(f"{noun('device', n)} will restart services")
        else:
            out.append(f"every device of {noun('application', n)} will restart services")
    if a.type is ActionType.DELETE:
        what = "their variables and tags" if res == "device" else "their devices, releases and variables"
        out.append(f"delete is irreversible: {noun(res, n)} and {what} will be removed")
    if a.type is ActionType.MOVE:
        out.append(f"{noun('device', n)} will move to {to_fleet}; their release pins will be cleared")
    if a.type is ActionType.PIN:
        out.append(f"{noun(res, n)} will be pinned to release {a.release} and may download it")
    return out


async def make_plan(job: Job, client: Client, *, api_url: str, now: datetime | None = None) -> Plan:
    """Compute the plan for ``job``: every target with its before → after and change kind."""
    now = now or datetime.now(UTC)
    res, act = job.target.resource, job.action
    fleet_ids = await resolve_fleets(client, job.target.fleets)
    resolved = Resolved(fleet_ids=fleet_ids)
    if act.type is ActionType.MOVE:
        if not act.to_fleet:
            raise InputError("action move needs to_fleet")
        dest = await resolve_fleets(client, [act.to_fleet])
        resolved = Resolved(fleet_ids=fleet_ids, move_to=next(iter(dest.values())))
        fleet_ids_all = {**fleet_ids, **dest}
    else:
        fleet_ids_all = dict(fleet_ids)
    if act.type is ActionType.PIN and fleet_ids:
        assert act.release is not None
        releases = await resolve_releases(client, act.release, {v: k for k, v in fleet_ids.items()})
        resolved = Resolved(fleet_ids, resolved.move_to, releases)
    filt = compile_filter(job, fleet_ids, now)
    select = actions.target_select(act, res)
    items = item_spool()  # diffed page by page: the targets' rows are never all held at once
    seen_fleets: set[int] = set()
    known = dict(fleet_ids_all)  # slug -> id of every fleet whose slug was read
    services = service.Tally()
    async for page in listed.target_pages(client, job.target, res, filt, select=select, page_size=PAGE_SIZE):
        fleets = {f for r in page if (f := actions.fleet_of(r, res)) is not None}
        if act.type is ActionType.PIN and fleets - set(resolved.releases):
            resolved = await _more_releases(client, act, resolved, fleets, known)
        seen_fleets |= fleets
        if actions.is_service_var(act):
            items.extend(await service.plan_items(client, job, page, services))
        elif actions.is_child(act):
            children = await _read_children(client, job, page) if page else {}
            items.extend(diff.diff_child(act, res, row, children.get(int(row["id"]))) for row in page)
        else:
            items.extend(diff.diff_row(act, res, row, resolved) for row in page)
    slugs = await _fleet_slugs(client, seen_fleets | set(fleet_ids_all.values()), known)
    extra = services.warnings(act) if actions.is_service_var(act) else []
    if fleet_ids and res == "device":
        in_fleets = in_("belongs_to__application", sorted(fleet_ids.values()))
        population = await client.count(res, filter=in_fleets)
    elif fleet_ids:
        population = len(fleet_ids)
    else:
        population = await client.count(res)
    if job.rollout is not None:  # rollout stages: the cohorts are drawn from every target at once
        items = item_spool(await assign_stages(job, client, list(items)))
    plan_fleets = sorted({slugs.get(f, str(f)) for f in seen_fleets} | set(fleet_ids_all))
    check_expect(job.target.expect, len(items), population, res)
    check_allowed(job.allow_fleets, plan_fleets)
    selection = render(filt) if filt is not None else ""
    plan = Plan(
        job_name=job.name, job_path=job.path, job_fingerprint=job.fingerprint, api_url=api_url,
        created_at=now, target_resource=res, compiled_filter=selection, precondition=selection,
        action=act, items=items, population=population, expect=job.target.expect,
        allow_fleets=job.allow_fleets, options=job.options,
        warnings=(*warnings_for(act, res, items), *extra),
        irreversible=act.type is ActionType.DELETE, plan_id=new_id(now), fleets=tuple(plan_fleets),
        fleet_ids={slug: fid for fid, slug in slugs.items() if slug in plan_fleets},
        rollout=job.rollout,
    )
    log.info("bulkops.plan.made", plan_id=plan.plan_id, targets=len(items), **plan.counts())
    return plan
