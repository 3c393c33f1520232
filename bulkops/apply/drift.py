"""A target's outcome after a write, and why a conditional write left it alone, in words an operator can
check: what it is now.

* its row changed since the plan: ``value is now 'trace'``;
* it no longer matches the job's target selection: ``no longer matches the job's target: is_online is
  now true`` — each term of the selection it fails (``field op literal`` terms say the field's current
  value; any other term is named as written: ``device_tag/any(…) is now false``).

Finding out costs reads only on this path: one GET for whether the targets still match the selection,
one for their current values, and one per selection term when the selection has several.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from bulkops.api import readback
from bulkops.api.readback import State
from bulkops.apply.conditions import Selection, simple_field
from bulkops.journal.journal import Outcomes
from bulkops.model import ChangeKind, Outcome, PlanItem
from bulkops.odata.ast import Node, lit
from bulkops.odata.render import render, render_literal
from bulkops.v7.actions import normalize

if TYPE_CHECKING:
    from bulkops.api.client import Client

NO_LONGER = "no longer matches the job's target"
UNCOMPARABLE = ("its planned before-value cannot be compared in a $filter: not written (no write goes out "
                "without its precondition)")
NOUNS = {"device": "device", "application": "fleet"}


def show(value: Any) -> str:
    """A value as a filter would write it: ``'trace'``, ``true``, ``null``, ``5``; JSON otherwise."""
    if isinstance(value, float):
        value = Decimal(str(value))
    if value is None or isinstance(value, str | int | bool | Decimal):
        text = render_literal(lit(value))
    else:
        text = orjson.dumps(value).decode()
    return text if len(text) <= 120 else text[:120] + "…"


def changed(item: PlanItem, row: Mapping[str, Any]) -> str:
    """What differs from the planned before-values: ``value is now 'trace'``."""
    parts = [f"{name} is now {show(normalize(row.get(name)))}"
             for name, was in sorted((item.before or {}).items()) if normalize(row.get(name)) != was]
    return ", ".join(parts) or "its value is no longer the planned before-value"


def outcome(i: int, item: PlanItem, state: State, row: Mapping[str, Any] | None, *, status: int | None,
            err: BaseException | None) -> Outcomes:
    """Item ``i``'s outcome from where its row stands after a write (``err``: the write's error, if any)."""
    if state is State.IN_PLACE:
        return Outcomes(i, Outcome.APPLIED, status)
    if state is State.GONE:
        return Outcomes(i, Outcome.DRIFTED, status, "the row no longer exists")
    if state is State.DRIFTED:
        if item.kind is ChangeKind.CREATE:
            return Outcomes(i, Outcome.DRIFTED, status, "a row with another value exists: "
                            + changed(replace(item, before=item.after), row or {}))
        return Outcomes(i, Outcome.DRIFTED, status, changed(item, row or {}))
    reason = str(err) if err is not None else f"the server did not apply the {item.kind.value}"
    return Outcomes(i, Outcome.FAILED, status if err is None else getattr(err, "status", status), reason)


def _term(term: Node, row: Mapping[str, Any]) -> str:
    name = simple_field(term)
    if name is None:
        return f"{render(term)} is now false"
    return f"{name} is now {show(normalize(row.get(name)))}"


async def explain(client: Client, selection: Selection, items: Mapping[int, PlanItem]) -> dict[int, str]:
    """For items a conditional write left as planned: the drift reason of each whose target no longer
    matches ``selection``. Items absent from the answer still match: the server did not apply them."""
    owners = sorted({it.target_id for it in items.values()})
    still = await readback.matching(client, selection.resource, owners, selection.tree)
    gone = [o for o in owners if o not in still]
    if not gone:
        return {}
    terms = selection.conjuncts()
    fields = sorted({f for t in terms if (f := simple_field(t)) is not None})
    rows = await readback.read_rows(client, selection.resource, gone, fields)
    failing: dict[int, list[Node]] = {o: [] for o in gone}
    if len(terms) == 1:
        for o in gone:
            failing[o].append(terms[0])
    else:
        for term in terms:
            ok = await readback.matching(client, selection.resource, gone, term)
            for o in gone:
                if o not in ok:
                    failing[o].append(term)
    reasons: dict[int, str] = {}
    for o in gone:
        row = rows.get(o)
        if row is None:
            reasons[o] = f"the {NOUNS.get(selection.resource, selection.resource)} no longer exists"
        elif failing[o]:
            reasons[o] = f"{NO_LONGER}: " + ", ".join(_term(t, row) for t in failing[o])
        else:
            reasons[o] = NO_LONGER
    return {i: reasons[it.target_id] for i, it in items.items() if it.target_id in reasons}
