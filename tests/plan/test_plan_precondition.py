"""The plan file keeps what the writes must carry (the target selection with its cut-off fixed) and which
items are skipped; a plan written before it stored them (format 1) is still read, its compiled filter
taken as its selection."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from bulkops.model import PLAN_FORMAT, Action, ActionType, ChangeKind, Plan, PlanItem
from bulkops.plan.file import read_plan, write_plan

CUT = ("belongs_to__application in (2) and is_online eq false and "
       "last_connectivity_event lt datetime'2026-09-02T09:23:54.966Z'")


def _plan(**kw: object) -> Plan:
    items = (PlanItem(5, "u5", ChangeKind.DELETE, "device", 5, {}, None, {"id": 5}),
             PlanItem(6, "u6", ChangeKind.NOOP, "device", 6, {}, None, {"id": 6},
                      skip="device u6 no longer exists"))
    base: dict[str, object] = dict(
        job_name="cleanup", job_path="", job_fingerprint="", api_url="http://127.0.0.1:9",
        created_at=datetime(2026, 12, 1, tzinfo=UTC), target_resource="device", compiled_filter=CUT,
        action=Action(ActionType.DELETE), items=items, population=10, plan_id="p1", precondition=CUT)
    base.update(kw)
    return Plan(**base)  # type: ignore[arg-type]


def test_precondition_and_skips_survive_the_file(tmp_path: Path) -> None:
    """A plan's precondition and its skipped items' reasons are written and read back unchanged."""
    path = tmp_path / "p.json"
    write_plan(_plan(), path)
    data = orjson.loads(path.read_bytes())
    assert (data["format"], data["precondition"]) == (PLAN_FORMAT, CUT)
    assert "skip" not in data["items"][0] and data["items"][1]["skip"] == "device u6 no longer exists"
    assert read_plan(path) == _plan()


def test_format_1_plan_takes_its_compiled_filter_as_precondition(tmp_path: Path) -> None:
    """A format-1 plan (no precondition stored) is read with its compiled filter as its selection; a
    format-1 undo plan, whose compiled filter only describes it, gets none."""
    path = tmp_path / "old.json"
    write_plan(_plan(), path)
    data = orjson.loads(path.read_bytes())
    data["format"] = 1
    del data["precondition"]
    for item in data["items"]:
        item.pop("skip", None)
    path.write_bytes(orjson.dumps(data))
    assert read_plan(path).precondition == CUT
    data["undo_of"], data["compiled_filter"] = "r1", "the targets run r1 applied"
    path.write_bytes(orjson.dumps(data))
    assert read_plan(path).precondition == ""
