"""Targets listed outright in the job (``uuids``, ``uuids_file``, ``ids``): paged in slices whose
``uuid in (…)`` / ``id in (…)`` filter fits the URL budget, each ANDed with the rest of the selection.

The list is not part of the plan's ``compiled_filter`` (10,000 uuids would not fit a request); the plan
pins the ids it found, and the preview says how many listed entries matched nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from bulkops.api import readback
from bulkops.model import Target
from bulkops.odata.ast import Node, and_, in_

if TYPE_CHECKING:
    from bulkops.api.client import Client

__all__ = ["listed", "target_pages"]


def listed(target: Target) -> tuple[str, tuple[str, ...] | tuple[int, ...]] | None:
    """``("uuid", uuids)`` or ``("id", ids)``, sorted, when the target lists its rows, else None."""
    if target.uuids:
        return "uuid", tuple(sorted(target.uuids))
    if target.ids:
        return "id", tuple(sorted(target.ids))
    return None


async def target_pages(
    client: Client, target: Target, resource: str, filt: Node | None, *, select: Sequence[str], page_size: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """The target rows, a page at a time: ``client.pages`` of the filter, or of each slice of the list."""
    found = listed(target)
    if found is None:
        async for page in client.pages(resource, filter=filt, select=select, page_size=page_size):
            yield page
        return
    field, values = found
    for part in readback.fitting_slices(client, resource, field, values, rest=filt, size=page_size):
        async for page in client.pages(resource, filter=and_(in_(field, part), filt), select=select,
                                       page_size=page_size):
            yield page
