"""What a person needs beside a plan to check it against a real fleet: device names, fleets, online
state, release versions, fleet sizes — read with a few GETs after the plan is made.

The plan itself holds ids and raw values; :func:`read_context` adds, for the preview and the CSV:

* each shown target's name, fleet slug, online state and last connectivity (every target when the
  whole list is wanted — a CSV, a count per fleet that the job's fleets do not already give, a pin
  or move whose warnings need each device's release or pin), one GET per 500 targets;
* every release the plan or those devices mention (version, status, invalidated, draft), one GET;
* the devices of each targeted fleet, for fleet-level changes (one GET with ``owns__device/$count``);
* for targets listed outright (``uuids``, ``ids``), the entries that matched nothing.

Nothing here changes the plan; it only describes it (:mod:`bulkops.plan.warnings` draws the warnings
that need it, :mod:`bulkops.plan.preview` shows it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bulkops.api import readback
from bulkops.model import ActionType, ChangeKind, Job, Plan
from bulkops.odata.ast import and_, in_
from bulkops.odata.parser import parse
from bulkops.plan.preview import samples
from bulkops.v7 import actions

if TYPE_CHECKING:
    from bulkops.api.client import Client

__all__ = ["PlanContext", "Release", "Row", "read_context"]

RELEASE_FIELDS = ("is_pinned_on__release", "should_be_running__release")
DEVICE_SELECT = ("id", "uuid", "device_name", "belongs_to__application", "is_online",
                 "last_connectivity_event", "is_running__release", "is_pinned_on__release")
RELEASE_SELECT = ("id", "belongs_to__application", "commit", "semver", "semver_major", "semver_minor",
                  "semver_patch", "status", "is_invalidated", "revision")
FLEET_SELECT = ("id", "uuid", "slug", "app_name", "should_be_running__release")


@dataclass(frozen=True, slots=True)
class Row:
    """How a person recognises one target."""

    id: int
    uuid: str  # a device's uuid, a fleet's uuid
    name: str  # device_name, or a fleet's app_name
    fleet: str  # the fleet slug ("" when unknown)
    online: bool | None = None  # devices only
    last_seen: str | None = None  # last_connectivity_event as the API gave it
    running: int | None = None  # release id the device runs
    pinned: int | None = None  # release id the device is pinned to
    devices: int | None = None  # fleets only: how many devices it has


@dataclass(frozen=True, slots=True)
class Release:
    id: int
    fleet: int | None
    version: str  # "1.5.0", or the short commit of a release without a version
    status: str
    invalidated: bool = False
    final: bool = True
    semver: tuple[int, int, int] | None = None


@dataclass(frozen=True, slots=True)
class PlanContext:
    api_url: str
    description: str = ""
    rows: Mapping[int, Row] = field(default_factory=dict)  # target id -> row
    complete: bool = False  # rows holds every target (else the samples only)
    per_fleet: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # slug -> (targets, to apply)
    releases: Mapping[int, Release] = field(default_factory=dict)
    fleet_targets: Mapping[int, int | None] = field(default_factory=dict)  # fleet id -> target release
    listed: int = 0  # entries of uuids/ids in the job
    listed_kind: str = ""  # "uuids" or "ids"
    listed_from: str = ""  # the uuids_file, when it came from one
    unmatched: tuple[str, ...] = ()  # listed entries that are not in the plan
    service_var_devices: int | None = None  # a move: targets with device service variables

    def release_name(self, release_id: Any) -> str:
        rel = self.releases.get(release_id) if isinstance(release_id, int) else None
        return rel.version if rel is not None else f"release #{release_id}"


def _int(value: Any) -> int | None:
    v = actions.normalize(value)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _sources(plan: Plan, job: Job | None) -> list[str]:
    """The fleets the targets are in, when the job or plan says so without reading them."""
    if job is not None:
        return list(job.target.fleets)
    return [f for f in plan.fleets if f != plan.action.to_fleet]


def _needs_every_row(plan: Plan, job: Job | None, csv: bool) -> bool:
    if csv or plan.target_resource == "application":
        return True
    if plan.action.type in (ActionType.PIN, ActionType.UNPIN, ActionType.MOVE):
        return True
    return len(_sources(plan, job)) != 1


async def _device_rows(client: Client, plan: Plan, ids: Sequence[int]) -> dict[int, Row]:
    found = await readback.read_rows(client, "device", ids, DEVICE_SELECT)
    return {i: Row(i, str(r.get("uuid") or ""), str(r.get("device_name") or ""),
                   _slug(plan, r.get("belongs_to__application")), r.get("is_online"),
                   r.get("last_connectivity_event"), _int(r.get("is_running__release")),
                   _int(r.get("is_pinned_on__release")))
            for i, r in found.items()}


def _slug(plan: Plan, fleet: Any) -> str:
    fid = _int(fleet)
    if fid is None:
        return ""
    return next((slug for slug, i in plan.fleet_ids.items() if i == fid), f"fleet #{fid}")


async def _fleets(client: Client, ids: Sequence[int]) -> list[dict[str, Any]]:
    if not ids:
        return []
    return await client.get("application", filter=in_("id", sorted(ids)), select=FLEET_SELECT,
                            expand="owns__device/$count")


def _fleet_rows(fleets: Iterable[Mapping[str, Any]]) -> dict[int, Row]:
    out: dict[int, Row] = {}
    for r in fleets:
        count = r.get("owns__device")
        out[int(r["id"])] = Row(int(r["id"]), str(r.get("uuid") or ""), str(r.get("app_name") or ""),
                                str(r.get("slug") or ""), devices=count if isinstance(count, int) else None)
    return out


async def _releases(client: Client, ids: Iterable[int]) -> dict[int, Release]:
    wanted = sorted(set(ids))
    out: dict[int, Release] = {}
    for start in range(0, len(wanted), 200):
        rows = await client.get("release", filter=in_("id", wanted[start:start + 200]), select=RELEASE_SELECT)
        for r in rows:
            major, minor, patch = (r.get("semver_major"), r.get("semver_minor"), r.get("semver_patch"))
            semver: tuple[int, int, int] | None = None
            if isinstance(major, int) and isinstance(minor, int) and isinstance(patch, int):
                semver = (major, minor, patch)
            version = str(r.get("semver") or "")
            if not version or version == "0.0.0":
                version, semver = str(r.get("commit") or "")[:7] or f"#{r['id']}", None
            out[int(r["id"])] = Release(int(r["id"]), _int(r.get("belongs_to__application")), version,
                                        str(r.get("status") or ""), bool(r.get("is_invalidated")),
                                        r.get("revision") is not None, semver)
    return out


def _release_ids(plan: Plan, rows: Mapping[int, Row], fleet_targets: Mapping[int, int | None]) -> set[int]:
    ids: set[int] = set()
    for it in plan.items:
        for values in (it.before, it.after):
            ids |= {v for f in RELEASE_FIELDS if (v := _int((values or {}).get(f))) is not None}
    for r in rows.values():
        ids |= {v for v in (r.running, r.pinned) if v is not None}
    return ids | {v for v in fleet_targets.values() if v is not None}


def _unmatched(plan: Plan, job: Job | None) -> tuple[str, int, tuple[str, ...]]:
    if job is None or not (job.target.uuids or job.target.ids):
        return "", 0, ()
    if job.target.uuids:
        found = {it.label for it in plan.items}
        return "uuids", len(job.target.uuids), tuple(u for u in job.target.uuids if u not in found)
    ids = {it.target_id for it in plan.items}
    return "ids", len(job.target.ids), tuple(str(i) for i in job.target.ids if i not in ids)


async def read_context(
    plan: Plan, client: Client, *, job: Job | None = None, every_row: bool = False
) -> PlanContext:
    """The context of ``plan`` (``job``: the job it was made from, when there is one; ``every_row``:
    describe every target, as a CSV needs)."""
    complete = _needs_every_row(plan, job, every_row)
    ids = [it.target_id for it in plan.items] if complete else [it.target_id for it in samples(plan)]
    fleet_targets: dict[int, int | None] = {}
    if plan.target_resource == "application":
        fleets = await _fleets(client, ids)
        rows = _fleet_rows(fleets)
        fleet_targets = {int(r["id"]): _int(r.get("should_be_running__release")) for r in fleets}
    else:
        rows = await _device_rows(client, plan, ids) if ids else {}
        if plan.action.type in (ActionType.UNPIN, ActionType.PIN):
            fleets = await _fleets(client, sorted(set(plan.fleet_ids.values())))
            fleet_targets = {int(r["id"]): _int(r.get("should_be_running__release")) for r in fleets}
    releases = await _releases(client, _release_ids(plan, rows, fleet_targets))
    kind, listed, unmatched = _unmatched(plan, job)
    with_vars = await _with_service_vars(client, plan) if plan.action.type is ActionType.MOVE else None
    return PlanContext(
        api_url=plan.api_url, description=job.description if job is not None else "", rows=rows,
        complete=complete, per_fleet=_per_fleet(plan, job, rows, complete), releases=releases,
        fleet_targets=fleet_targets, listed=listed, listed_kind=kind,
        listed_from=job.target.uuids_file if job else "", unmatched=unmatched,
        service_var_devices=with_vars,
    )


async def _with_service_vars(client: Client, plan: Plan) -> int:
    """How many of the devices a move changes have device service variables (the move deletes them)."""
    ids = sorted(it.target_id for it in plan.items if it.kind is not ChangeKind.NOOP)
    devices: set[int] = set()
    has_vars = parse("device_service_environment_variable/$count gt 0")
    step = readback.READ_CHUNK
    for start in range(0, len(ids), step):
        filt = and_(in_("device", ids[start:start + step]), has_vars)
        rows = await client.get("service_install", filter=filt, select=("id", "device"))
        devices |= {d for r in rows if (d := _int(r.get("device"))) is not None}
    return len(devices)


def _per_fleet(
    plan: Plan, job: Job | None, rows: Mapping[int, Row], complete: bool
) -> dict[str, tuple[int, int]]:
    total = Counter[str]()
    active = Counter[str]()
    if complete:
        for it in plan.items:
            row = rows.get(it.target_id)
            slug = (row.fleet if row else "") or "(gone)"
            total[slug] += 1
            active[slug] += it.kind is not ChangeKind.NOOP
    elif len(_sources(plan, job)) == 1:
        slug = _sources(plan, job)[0]
        total[slug] = len(plan.items)
        active[slug] = sum(1 for it in plan.items if it.kind is not ChangeKind.NOOP)
    return {k: (total[k], active[k]) for k in sorted(total, key=lambda k: (-total[k], k))}
