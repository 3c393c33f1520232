"""The plan file: streamed JSON that reads back to the same plan, written owner-only."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from bulkops.errors import PlanFileError
from bulkops.model import Action, ActionType, ChangeKind, Plan, PlanItem
from bulkops.plan.file import read_plan, write_plan


def make(items: tuple[PlanItem, ...]) -> Plan:
    return Plan(job_name="j", job_path="jobs/j.toml", job_fingerprint="ab" * 32, api_url="http://127.0.0.1:1",
                created_at=datetime(2026, 11, 27, 8, 0, tzinfo=UTC), target_resource="device",
                compiled_filter="belongs_to__application in (1)",
                action=Action(ActionType.SET_ENV, name="LOG_LEVEL", value="it's \"debug\"\n"),
                items=items, population=3, plan_id="p1")


@pytest.mark.parametrize("count", [0, 1, 3])
def test_plan_round_trips(tmp_path: Path, count: int) -> None:
    """write_plan then read_plan gives the same plan, for no item, one, and several."""
    items = tuple(
        PlanItem(i, f"uuid-{i}", ChangeKind.CHANGE if i % 2 else ChangeKind.CREATE,
                 "device_environment_variable", i if i % 2 else None,
                 {"value": "ü'\""} if i % 2 else None, {"value": "debug"}, {"device": i, "name": "LOG_LEVEL"})
        for i in range(1, count + 1)
    )
    plan = make(items)
    path = tmp_path / "p.json"
    write_plan(plan, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = orjson.loads(path.read_bytes())
    assert len(data["items"]) == count and data["counts"]["change"] == sum(i % 2 for i in range(1, count + 1))
    assert read_plan(path) == plan


def test_truncated_plan_file_is_refused(tmp_path: Path) -> None:
    """A plan file cut short is a PlanFileError naming the file, not a crash."""
    path = tmp_path / "p.json"
    write_plan(make(()), path)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(PlanFileError, match=r"p\.json: not a plan file \(invalid JSON"):
        read_plan(path)
