"""A plan's counts and digest are computed once per spool of items, and stay right when the plan changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from bulkops.model import Action, ActionType, ChangeKind, Plan, PlanItem
from bulkops.plan.file import item_spool
from bulkops.plan.seal import plan_digest


def _items() -> list[PlanItem]:
    kinds = [ChangeKind.CHANGE, ChangeKind.CREATE, ChangeKind.NOOP]
    return [_item(i, kinds[i % 3]) for i in range(1, 31)]


def _item(i: int, kind: ChangeKind) -> PlanItem:
    return PlanItem(target_id=i, label=f"uuid{i}", kind=kind, resource="device", row_id=i,
                    before={"note": "a"}, after={"note": f"b{i}"})


def _plan(items: object) -> Plan:
    return Plan(job_name="j", job_path="/j.toml", job_fingerprint="f", api_url="http://127.0.0.1:1",
                created_at=datetime(2026, 12, 1, tzinfo=UTC), target_resource="device", compiled_filter="",
                action=Action(ActionType.PATCH, fields={"note": "b"}), items=items,  # type: ignore[arg-type]
                population=30)


def test_counts_of_a_spool_equal_those_of_a_tuple_and_cannot_be_changed_by_a_caller() -> None:
    spooled, plain = _plan(item_spool(_items())), _plan(tuple(_items()))
    assert spooled.counts() == plain.counts() == {"change": 10, "create": 10, "delete": 0, "noop": 10}
    spooled.counts()["change"] = 99  # a caller's copy
    assert spooled.counts()["change"] == 10


def test_digest_of_a_spool_is_the_full_digest_and_follows_the_head_and_the_items() -> None:
    """The kept digest equals one computed from scratch; a plan with another head (the same items) or
    with one more item gets its own."""
    items = item_spool(_items())
    plan = _plan(items)
    first = plan_digest(plan)
    assert first == plan_digest(_plan(tuple(_items())))  # the same as with no spool at all
    assert plan_digest(plan) == first
    edited = replace(plan, allow_fleets=("acme/other",))
    assert plan_digest(edited) != first
    assert plan_digest(plan) == first
    items.append(_item(99, ChangeKind.CHANGE))
    assert plan_digest(plan) == plan_digest(_plan(tuple(items))) != first
