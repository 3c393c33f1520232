"""Targets deleted since a run: an undo or a retry plans nothing for them (a POST for a deleted device is
answered 409 "Data is referenced by device"); their items are kept, marked skipped with the reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from bulkops.api import readback
from bulkops.model import ChangeKind, PlanItem
from bulkops.plan.guards import noun

if TYPE_CHECKING:
    from bulkops.api.client import Client

ONE = {"device": "device", "application": "fleet"}


async def split_gone(
    client: Client, resource: str, items: Mapping[int, PlanItem]
) -> tuple[dict[int, PlanItem], dict[int, PlanItem]]:
    """``items`` (by plan index) split into those whose target still exists and, marked skipped, those
    whose target (a ``resource`` row) does not: one GET per 500 targets."""
    if not items:
        return {}, {}
    alive = await readback.matching(client, resource, sorted({it.target_id for it in items.values()}))
    present = {i: it for i, it in items.items() if it.target_id in alive}
    what = ONE.get(resource, resource)
    gone = {i: replace(it, kind=ChangeKind.NOOP, skip=f"{what} {it.label} no longer exists")
            for i, it in items.items() if it.target_id not in alive}
    return present, gone


def gone_warning(resource: str, n: int) -> list[str]:
    """``2 devices no longer exist: skipped`` (nothing when none)."""
    if not n:
        return []
    return [f"{noun(resource, n)} no longer {'exists' if n == 1 else 'exist'}: skipped"]
