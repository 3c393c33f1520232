"""Device service variables (``set_service_env`` / ``remove_service_env``): planned through the devices'
service installs.

In v7 a ``device_service_environment_variable`` has no ``device`` field: it hangs off a
``service_install`` (one device × one service), and its natural key is (``service_install``, ``name``).
So for each page of target devices the planner reads, in a few GETs: the service of that name in each
of their fleets, the devices' installs of it, and the variable rows on those installs. A device that
has no install of the service (it runs another release, or none yet) cannot carry the variable: it is
left out of the plan, and the preview says how many were.

The same path checks an edited plan before apply: every install a plan item names must belong to the
item's device, and every variable row it writes must hang off that install.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bulkops.api import readback
from bulkops.model import Action, ActionType, ChangeKind, Job, Plan, PlanItem
from bulkops.odata.ast import and_, eq, in_
from bulkops.plan.guards import noun
from bulkops.v7 import actions

if TYPE_CHECKING:
    from bulkops.api.client import Client

__all__ = ["RESOURCE", "Tally", "check_owners", "plan_items"]

RESOURCE = actions.SERVICE_VAR_RESOURCE
INSTALL = actions.SERVICE_INSTALL
CHUNK = 1000


def _int(value: Any) -> int | None:
    v = actions.normalize(value)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


async def _installs(client: Client, action: Action, devices: Mapping[int, int]) -> dict[int, int]:
    """device id → its install of the action's service (the service of that name in its own fleet)."""
    fleets = sorted(set(devices.values()))
    if not fleets:
        return {}
    services = await client.get("service", filter=and_(eq("service_name", action.service or ""),
                                                       in_("application", fleets)),
                                select=("id", "application"))
    fleet_of_service = {int(s["id"]): _int(s.get("application")) for s in services}
    if not fleet_of_service:
        return {}
    rows = await readback.rows_where_in(client, INSTALL, "device", sorted(devices), size=CHUNK,
                                        rest=in_("installs__service", sorted(fleet_of_service)),
                          select=("id", "device", "installs__service"))
    out: dict[int, int] = {}
    for row in rows:
        device, service = _int(row.get("device")), _int(row.get("installs__service"))
        if device is None or service is None or device not in devices:
            continue
        if fleet_of_service.get(service) == devices[device]:
            out[device] = int(row["id"])
    return out


def _item(
    action: Action, device: Mapping[str, Any], install: int, current: Mapping[str, Any] | None
) -> PlanItem:
    target_id = int(device["id"])
    label = str(device.get("uuid") or target_id)
    key = {INSTALL: install, "name": action.name}
    row_id = int(current["id"]) if current is not None else None
    before = {"value": current.get("value")} if current is not None else None
    if action.type is ActionType.REMOVE_SERVICE_ENV:
        kind = ChangeKind.NOOP if current is None else ChangeKind.DELETE
        return PlanItem(target_id, label, kind, RESOURCE, row_id, before, None, key)
    after = {"value": action.value}
    kind = ChangeKind.CREATE if before is None else ChangeKind.NOOP if before == after else ChangeKind.CHANGE
    return PlanItem(target_id, label, kind, RESOURCE, row_id, before, after, key)


class Tally:
    """What the warnings of a service variable plan count, page after page."""

    def __init__(self) -> None:
        self.left_out = 0  # selected devices without an install of the service
        self.active = 0  # items that change something

    def warnings(self, action: Action) -> list[str]:
        out: list[str] = []
        if self.left_out:
            verb = "has" if self.left_out == 1 else "have"
            out.append(f"{noun('device', self.left_out)} of the selection {verb} no install of service"
                       f" {action.service!r} (another release, or none yet): left out")
        if self.active:
            out.append(f"{noun('device', self.active)} will restart service {action.service!r}")
        return out


async def plan_items(
    client: Client, job: Job, targets: Sequence[Mapping[str, Any]], tally: Tally
) -> list[PlanItem]:
    """The items for ``targets`` (device rows with id, uuid, fleet); ``tally`` counts what the warnings
    will say."""
    action = job.action
    items: list[PlanItem] = []
    for start in range(0, len(targets), CHUNK):
        page = targets[start:start + CHUNK]
        devices = {int(r["id"]): f for r in page if (f := actions.fleet_of(r, "device")) is not None}
        installs = await _installs(client, action, devices)
        current: dict[int, Mapping[str, Any]] = {}
        if installs:
            rows = await readback.rows_where_in(
                client, RESOURCE, INSTALL, sorted(installs.values()), size=CHUNK,
                rest=eq("name", action.name or ""), select=("id", INSTALL, "value"))
            current = {i: r for r in rows if (i := _int(r.get(INSTALL))) is not None}
        items.extend(_item(action, r, installs[int(r["id"])], current.get(installs[int(r["id"])]))
                     for r in page if int(r["id"]) in installs)
    tally.left_out += len(targets) - len(items)
    tally.active += sum(1 for it in items if it.kind is not ChangeKind.NOOP)
    return items


async def check_owners(client: Client, plan: Plan) -> list[str]:
    """For an edited plan: every install an item names must be its device's, and every row it writes must
    hang off that install. Returns what does not match (empty when the plan is consistent)."""
    items = [it for it in plan.items if it.kind is not ChangeKind.NOOP]
    bad: list[str] = []
    installs = {int(v): it.target_id for it in items if isinstance(v := it.key.get(INSTALL), int)}
    rows = await readback.read_rows(client, INSTALL, sorted(installs), ["device"])
    for install, device in sorted(installs.items()):
        row = rows.get(install)
        if row is not None and _int(row.get("device")) != device:
            bad.append(f"{INSTALL} {install} belongs to device {_int(row.get('device'))}, not {device}")
    written: dict[int, Any] = {it.row_id: it.key.get(INSTALL) for it in items if it.row_id is not None}
    rows = await readback.read_rows(client, RESOURCE, sorted(written), [INSTALL])
    for row_id, install in sorted(written.items()):
        row = rows.get(row_id)
        got = _int(row.get(INSTALL)) if row is not None else install
        if got != install:
            bad.append(f"{RESOURCE} row {row_id} belongs to {INSTALL} {got}, not {install}")
    return bad
