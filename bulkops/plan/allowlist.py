"""``allow_fleets`` checked against the server before a plan is applied.

A plan file is plain JSON: an edited item could address a device, a variable row or a destination
fleet outside the job's allowlist while the plan's own ``fleets`` list still looks allowed. So before
the first write, the fleet of every row the plan writes is read from the server: the targets (and the
owner named in a create's key), the owner of every child row a PATCH or DELETE addresses (it must be
the item's target), and a move's destination. Anything outside ``allow_fleets`` refuses the whole plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from bulkops.api import readback
from bulkops.errors import GuardError
from bulkops.log import get_logger
from bulkops.model import ChangeKind, Plan
from bulkops.odata.ast import in_
from bulkops.plan.guards import check_allowed
from bulkops.plan.service import check_owners
from bulkops.v7 import actions

if TYPE_CHECKING:
    from bulkops.api.client import Client

log = get_logger("bulkops.allowlist")
FLEET_LINK = "belongs_to__application"


def _ints(values: Iterable[object]) -> set[int]:
    return {v for v in values if isinstance(v, int) and not isinstance(v, bool)}


async def _slugs(client: Client, fleet_ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(fleet_ids))
    if not wanted:
        return {}
    rows = await client.get("application", filter=in_("id", wanted), select=("id", "slug"))
    return {int(r["id"]): str(r.get("slug")) for r in rows}


async def _allowed_ids(client: Client, slugs: Iterable[str]) -> set[int]:
    wanted = sorted({s.lower() for s in slugs})
    rows = await client.get("application", filter=in_("slug", wanted), select=("id", "slug"))
    return {int(r["id"]) for r in rows if str(r.get("slug", "")).lower() in wanted}


async def check_plan_fleets(plan: Plan, client: Client) -> None:
    """Refuse (``GuardError``) a plan with ``allow_fleets`` that would write a row of another fleet."""
    if not plan.allow_fleets:
        return
    owner = plan.target_resource
    owners: set[int] = set()
    named: set[int] = set()  # fleets named in after-values (a move's destination)
    children: dict[str, list[tuple[int, int]]] = {}  # child resource -> (row id, the target it belongs to)
    for it in plan.items:
        if it.kind is ChangeKind.NOOP:
            continue
        owners |= _ints([it.target_id, it.key.get(owner)])
        if it.resource == owner:
            owners |= _ints([it.row_id])
        elif it.row_id is not None and not actions.is_service_var(plan.action):  # those: check_owners
            children.setdefault(it.resource, []).append((it.row_id, it.target_id))
        named |= _ints([(it.after or {}).get(FLEET_LINK)])
    mismatched = await check_owners(client, plan) if actions.is_service_var(plan.action) else []
    for resource, expected in children.items():
        rows = await readback.read_rows(client, resource, sorted({r for r, _ in expected}), [owner])
        for row_id, target in sorted(expected):
            row = rows.get(row_id)
            if row is None:
                continue  # gone: apply finds it drifted
            got = actions.normalize(row.get(owner))
            owners |= _ints([got])
            if got != target:
                mismatched.append(f"{resource} row {row_id} belongs to {owner} {got}, not {target}")
    if owner == "device":
        rows = await readback.read_rows(client, "device", sorted(owners), [FLEET_LINK])
        fleets = _ints(actions.normalize(r.get(FLEET_LINK)) for r in rows.values())
    else:
        fleets = set(owners)
    allowed = await _allowed_ids(client, plan.allow_fleets)
    outside = (fleets | named) - allowed
    if outside:
        names = await _slugs(client, outside)
        log.info("bulkops.allowlist.refused", fleets=sorted(outside))
        shown = [names.get(f, f"#{f}") for f in sorted(outside)]
        check_allowed(plan.allow_fleets, shown)
        allow = ", ".join(plan.allow_fleets)
        raise GuardError(f"fleets {', '.join(shown)} are not in allow_fleets ({allow})")
    if mismatched:
        raise GuardError(f"the plan writes rows of other targets ({mismatched[0]}); the plan file was edited "
                         "or is corrupt: make a new plan")
