"""The plan file: streamed JSON that reads back to the same plan, written owner-only."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from bulkops.errors import PlanFileError
from bulkops.model import Action, ActionType, ChangeKind, Plan, PlanItem
from bulkops.plan.file import plan_from_json, read_plan, write_plan
from bulkops.spool import Spool


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


def _three(tmp_path: Path) -> tuple[Plan, Path]:
    items = tuple(PlanItem(i, f"uuid-{i}", ChangeKind.CHANGE, "device_environment_variable", i,
                           {"value": "info"}, {"value": "debug"}, {"device": i, "name": "LOG_LEVEL"})
                  for i in range(1, 4))
    plan = make(items)
    path = tmp_path / "p.json"
    write_plan(plan, path)
    return plan, path


def test_a_written_plan_is_read_a_line_at_a_time_onto_disk(tmp_path: Path) -> None:
    """The plan file bulkops writes is read item by item into an on-disk spool, not into a tuple: the same
    plan as a whole-document parse gives."""
    plan, path = _three(tmp_path)
    read = read_plan(path)
    assert isinstance(read.items, Spool)
    assert read == plan == plan_from_json(orjson.loads(path.read_bytes()))


def test_a_plan_file_laid_out_otherwise_is_still_read(tmp_path: Path) -> None:
    """Re-indented by a tool (one JSON document in another layout): read whole, the same plan."""
    plan, path = _three(tmp_path)
    path.write_bytes(orjson.dumps(orjson.loads(path.read_bytes()), option=orjson.OPT_INDENT_2))
    assert read_plan(path) == plan
    path.write_bytes(orjson.dumps(orjson.loads(path.read_bytes())))  # one line
    assert read_plan(path) == plan


@pytest.mark.parametrize("edit", ["key after the items", "two items on a line", "items in the header",
                                  "comma after the last item", "missing comma"])
def test_the_line_reader_never_reads_a_file_otherwise_than_json_does(tmp_path: Path, edit: str) -> None:
    """Whatever the line reader takes, a JSON parser takes the same way; anything else falls back to the
    whole-document parse, so an edit cannot hide from the seal check behind the layout."""
    plan, path = _three(tmp_path)
    text = path.read_bytes()
    lines = text.split(b"\n")
    first = next(n for n, line in enumerate(lines) if line.startswith(b"    {"))
    if edit == "key after the items":
        text = text.rstrip()[:-1] + b',\n  "plan_id": "other"\n}\n'
    elif edit == "two items on a line":
        lines[first] = lines[first] + lines[first + 1].strip()
        del lines[first + 1]
        text = b"\n".join(lines)
    elif edit == "items in the header":
        text = text.replace(b'  "format": 2,', b'  "items": [],\n  "format": 2,', 1)
    elif edit == "comma after the last item":
        text = text.replace(b'}\n  ]', b'},\n  ]', 1)
    else:
        lines[first] = lines[first].rstrip(b",")
        text = b"\n".join(lines)
    path.write_bytes(text)
    try:
        expected: Plan | str = plan_from_json(orjson.loads(text))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        expected = type(exc).__name__
    try:
        got: Plan | str = read_plan(path)
    except PlanFileError as exc:
        got = "JSONDecodeError" if "invalid JSON" in str(exc) else str(exc)
    assert got == expected
    if edit == "key after the items":
        assert isinstance(got, Plan) and got.plan_id == "other"
    if edit == "two items on a line":
        assert isinstance(got, Plan) and len(got.items) == 3
    if edit == "items in the header":
        assert isinstance(got, Plan) and got == plan  # the later "items" wins, as in any JSON parser
