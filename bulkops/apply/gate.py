"""Rollout gates: read a stage's devices back in batched GETs and tell who passes; read the stop switch.

Device targets are read by id, at most ``POLL_IDS`` ids per GET (fewer only if a long gate filter
would push the request line past the URL budget). Fleet targets are gated on the devices in them, read
``POLL_IDS`` fleets at a time; a fleet passes when all its devices do.

What passes:

* ``release`` (the default for move, pin, unpin): the device is online and ``is_running__release``
  equals ``should_be_running__release`` (its pin, else its fleet's target release);
* ``status`` (the default for env and config changes): online, and ``overall_status`` is neither a
  failure state (``disconnected``, ``inactive``, ``reduced-functionality``) nor still in progress
  (``updating``, ``configuring``, ``post-provisioning``);
* a filter: the device matches ``id in (…) and (<filter>)``.

The stop switch is one GET per read: the fleet env var of that name on any fleet of the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bulkops.api import readback
from bulkops.model import GATE_DEFAULT, GATE_NONE, Plan, PlanItem
from bulkops.odata.ast import Node, and_, eq, in_
from bulkops.odata.parser import parse
from bulkops.plan.stages import default_gate
from bulkops.v7 import actions

if TYPE_CHECKING:
    from bulkops.api.client import Client

POLL_IDS = 200
FAILED_STATUSES = frozenset({"disconnected", "inactive", "reduced-functionality"})
BUSY_STATUSES = frozenset({"updating", "configuring", "post-provisioning"})
RELEASE_SELECT = ("id", "uuid", "is_online", "is_running__release", "should_be_running__release")
STATUS_SELECT = ("id", "uuid", "is_online", "overall_status")


@dataclass(frozen=True, slots=True)
class Poll:
    """One reading of a gate: the plan item indices that pass, and why the others do not (yet)."""

    passed: frozenset[int]
    failing: Mapping[int, str]
    requests: int


def gate_kind(plan: Plan) -> str:
    """``release``, ``status``, ``filter`` or ``none``."""
    assert plan.rollout is not None
    gate = plan.rollout.gate
    if gate == GATE_NONE:
        return "none"
    if gate == GATE_DEFAULT:
        return default_gate(plan.action.type)
    return "filter"


def _problem(kind: str, row: Mapping[str, Any]) -> str | None:
    """Why a device does not pass the default gate ``kind``, or None when it does."""
    if row.get("is_online") is not True:
        return "offline"
    if kind == "release":
        running = actions.normalize(row.get("is_running__release"))
        should = actions.normalize(row.get("should_be_running__release"))
        if should is not None and running != should:
            return f"runs release {running}, should run {should}"
        return None
    status = row.get("overall_status")
    if status in FAILED_STATUSES or status in BUSY_STATUSES:
        return f"overall_status is {status}"
    return None


async def _devices(client: Client, field: str, ids: Sequence[int], extra: Node | None,
                   select: tuple[str, ...]) -> tuple[list[dict[str, Any]], int]:
    """Devices whose ``field`` is one of ``ids`` (and matching ``extra``), and the GETs it took."""
    rows: list[dict[str, Any]] = []
    requests = 0
    for part in readback.fitting_slices(client, "device", field, ids, rest=extra, size=POLL_IDS):
        filt = and_(in_(field, part), extra)
        if field == "id":
            rows.extend(await client.get("device", filter=filt, select=select))
            requests += 1
            continue
        async for page in client.pages("device", filter=filt, select=select):
            rows.extend(page)
            requests += 1
    return rows, requests


async def poll(client: Client, plan: Plan, indices: Sequence[int]) -> Poll:
    """Read the gate once for the plan items ``indices``. Raises the client's errors unchanged (the
    caller turns them into an inconclusive verdict)."""
    assert plan.rollout is not None
    kind = gate_kind(plan)
    items: dict[int, PlanItem] = {i: plan.items[i] for i in indices}
    if kind == "none" or not items:
        return Poll(frozenset(items), {}, 0)
    gate_filter = parse(plan.rollout.gate) if kind == "filter" else None
    select = RELEASE_SELECT if kind == "release" else STATUS_SELECT
    by_target = {it.target_id: i for i, it in items.items()}
    if plan.target_resource == "device":
        wanted = ("id",) if kind == "filter" else select
        rows, requests = await _devices(client, "id", sorted(by_target), gate_filter, wanted)
        seen = {int(r["id"]): r for r in rows}
        failing: dict[int, str] = {}
        for target, index in by_target.items():
            row = seen.get(target)
            if row is None:
                failing[index] = "does not match the gate filter" if kind == "filter" else "no longer exists"
            elif kind != "filter" and (problem := _problem(kind, row)) is not None:
                failing[index] = problem
        return Poll(frozenset(set(items) - set(failing)), failing, requests)
    fleet_select = ("id", "uuid") if kind == "filter" else select
    return await _poll_fleets(client, kind, by_target, gate_filter, fleet_select)


async def _poll_fleets(client: Client, kind: str, by_target: Mapping[int, int], gate_filter: Node | None,
                       select: tuple[str, ...]) -> Poll:
    fleet_field = "belongs_to__application"
    fields = (*select, fleet_field) if fleet_field not in select else select
    rows, requests = await _devices(client, fleet_field, sorted(by_target), None, fields)
    matching: set[int] = set()
    if gate_filter is not None:
        hits, more = await _devices(client, fleet_field, sorted(by_target), gate_filter, ("id",))
        matching = {int(r["id"]) for r in hits}
        requests += more
    bad: dict[int, list[str]] = {}
    total: dict[int, int] = {}
    for row in rows:
        fleet = actions.normalize(row.get(fleet_field))
        if not isinstance(fleet, int):
            continue
        total[fleet] = total.get(fleet, 0) + 1
        problem = ("does not match the gate filter" if int(row["id"]) not in matching else None) \
            if gate_filter is not None else _problem(kind, row)
        if problem is not None:
            bad.setdefault(fleet, []).append(f"{row.get('uuid') or row['id']}: {problem}")
    failing = {by_target[f]: f"{len(b)} of its {total[f]} devices do not pass, e.g. {b[0]}"
               for f, b in bad.items() if f in by_target}
    return Poll(frozenset(set(by_target.values()) - set(failing)), failing, requests)


async def stop_switch(client: Client, name: str, fleet_ids: Mapping[str, int]) -> str | None:
    """The slug of a fleet of the plan that has the env var ``name`` (one GET), or None."""
    if not fleet_ids:
        return None
    rows = await client.get("application_environment_variable",
                            filter=and_(eq("name", name), in_("application", sorted(fleet_ids.values()))),
                            select=("id", "application"))
    slugs = {fid: slug for slug, fid in fleet_ids.items()}
    for row in rows:
        fleet = actions.normalize(row.get("application"))
        if isinstance(fleet, int):
            return slugs.get(fleet, f"#{fleet}")
    return None
