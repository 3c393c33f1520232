"""Planning logic without a server: per-target diffs, batching, the plan file, the guards."""

from __future__ import annotations

import hashlib
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bulkops.api.urls import URL_BUDGET
from bulkops.apply.conditions import Selection
from bulkops.apply.units import MAX_TERMS, UnitKind, make_units
from bulkops.errors import GuardError, PlanFileError
from bulkops.model import Action, ActionType, ApplyOptions, ChangeKind, Expect, Plan, PlanItem
from bulkops.odata.render import render
from bulkops.plan import diff
from bulkops.plan.diff import Resolved
from bulkops.plan.file import read_plan, write_plan
from bulkops.plan.guards import check_allowed, check_apply, check_expect
from bulkops.plan.preview import preview_text

SET = Action(ActionType.SET_ENV, name="LOG_LEVEL", value="debug")
REMOVE = Action(ActionType.REMOVE_TAG, key="ring")


def test_set_env_diff_kinds() -> None:
    """set_env: absent → create, same value → noop, other value → change with before/after."""
    dev = {"id": 7, "uuid": "abc"}
    create = diff.diff_child(SET, "device", dev, None)
    assert (create.kind, create.resource, create.row_id, create.before) == (
        ChangeKind.CREATE, "device_environment_variable", None, None)
    assert create.key == {"device": 7, "name": "LOG_LEVEL"} and create.after == {"value": "debug"}
    noop = diff.diff_child(SET, "device", dev, {"id": 9, "device": {"__id": 7}, "value": "debug"})
    assert noop.kind is ChangeKind.NOOP
    change = diff.diff_child(SET, "device", dev, {"id": 9, "device": {"__id": 7}, "value": "info"})
    assert (change.kind, change.row_id, change.before, change.label) == (
        ChangeKind.CHANGE, 9, {"value": "info"}, "abc")


def test_remove_tag_diff_kinds() -> None:
    """remove_tag on a fleet: absent → noop, present → delete of the tag row."""
    app = {"id": 3, "slug": "acme/gateway"}
    assert diff.diff_child(REMOVE, "application", app, None).kind is ChangeKind.NOOP
    item = diff.diff_child(REMOVE, "application", app, {"id": 11, "value": "canary"})
    assert (item.kind, item.resource, item.row_id, item.after, item.key) == (
        ChangeKind.DELETE, "application_tag", 11, None, {"application": 3, "tag_key": "ring"})


def test_row_actions_normalize_links() -> None:
    """move/pin compare link ids, whatever form the API returned them in; a move keeps the pin it clears,
    and leaves the pin of a device already in the destination alone."""
    move = Action(ActionType.MOVE, to_fleet="acme/gateway-next")
    row = {"id": 5, "uuid": "u5", "belongs_to__application": {"__id": 1},
           "is_pinned_on__release": {"__id": 8}}
    item = diff.diff_row(move, "device", row, Resolved(move_to=3))
    assert (item.kind, item.before, item.after) == (
        ChangeKind.CHANGE, {"belongs_to__application": 1, "is_pinned_on__release": 8},
        {"belongs_to__application": 3, "is_pinned_on__release": None})
    there = diff.diff_row(move, "device", row, Resolved(move_to=1))
    assert (there.kind, there.after) == (
        ChangeKind.NOOP, {"belongs_to__application": 1, "is_pinned_on__release": 8})
    pin = Action(ActionType.PIN, release="1.5.0")
    row = {"id": 5, "uuid": "u5", "belongs_to__application": {"__id": 1}, "is_pinned_on__release": None}
    item = diff.diff_row(pin, "device", row, Resolved(releases={1: 42}))
    assert item.after == {"is_pinned_on__release": 42} and item.before == {"is_pinned_on__release": None}
    delete = diff.diff_row(Action(ActionType.DELETE), "device", row, Resolved())
    assert (delete.kind, delete.row_id, delete.after) == (ChangeKind.DELETE, 5, None)


def _item(i: int, kind: ChangeKind, before: str | None) -> PlanItem:
    row = None if kind is ChangeKind.CREATE else 1000 + i
    return PlanItem(i, f"u{i}", kind, "device_environment_variable", row,
                    None if before is None else {"value": before}, {"value": "debug"},
                    {"device": i, "name": "LOG_LEVEL"})


def test_units_group_by_before_value_and_pool_the_rest() -> None:
    """Big before-value groups get conditional batches; the small ones share a batch whose filter ORs
    one term per before-value; creates go one each."""
    items = [_item(i, ChangeKind.CHANGE, "info") for i in range(25)]
    items += [_item(25 + i, ChangeKind.CHANGE, f"v{i}") for i in range(3)]
    items += [_item(28 + i, ChangeKind.CREATE, None) for i in range(2)]
    units = make_units(items, range(len(items)), 10, lambda res, f: 100)
    kinds = [(u.kind, len(u.indices)) for u in units]
    assert kinds == [(UnitKind.CONDITIONAL, 10), (UnitKind.CONDITIONAL, 10), (UnitKind.CONDITIONAL, 5),
                     (UnitKind.GROUPED, 3), (UnitKind.CREATE, 1), (UnitKind.CREATE, 1)]
    assert units[0].filter is not None and units[3].filter is not None
    ids = ",".join(str(1000 + i) for i in range(10))
    assert render(units[0].filter) == f"id in ({ids}) and value eq 'info'"
    assert render(units[3].filter) == ("(id in (1025) and value eq 'v0') or (id in (1026) and value eq 'v1') "
                                       "or (id in (1027) and value eq 'v2')")


def test_units_carry_the_selection_on_the_owner() -> None:
    """With a selection, a child row's write carries it through its owner, beside the before-values."""
    items = [_item(25 + i, ChangeKind.CHANGE, f"v{i}") for i in range(2)]
    selection = Selection.of("device",
                             "belongs_to__application in (3) and device_tag/any(t:t/tag_key eq 'x')")
    (unit,) = make_units(items, range(2), 10, lambda res, f: 100, selection=selection)
    assert unit.filter is not None and render(unit.filter) == (
        "((id in (1025) and value eq 'v0') or (id in (1026) and value eq 'v1')) and "
        "device/any(o:o/belongs_to__application in (3) and o/device_tag/any(t:t/tag_key eq 'x'))")


def test_units_cap_the_terms_of_one_write() -> None:
    """One write ORs at most MAX_TERMS before-values; the rest go in further writes."""
    items = [_item(i, ChangeKind.CHANGE, f"v{i}") for i in range(250)]
    units = make_units(items, range(250), 200, lambda res, f: 100)
    assert [(u.kind, len(u.indices)) for u in units] == [
        (UnitKind.GROUPED, MAX_TERMS), (UnitKind.GROUPED, MAX_TERMS), (UnitKind.GROUPED, 50)]


def test_units_shrink_to_the_url_budget() -> None:
    """A batch shrinks until the request line fits the URL budget."""
    items = [_item(i, ChangeKind.CHANGE, "info" if i % 2 else f"v{i}") for i in range(200)]

    def length(res: str, f: object) -> int:
        return 20 * len(render(f))  # type: ignore[arg-type]

    units = make_units(items, range(200), 200, length)
    assert len(units) > 2
    for u in units:
        assert u.filter is not None and length("", u.filter) <= URL_BUDGET
    assert sorted(i for u in units for i in u.indices) == list(range(200))


def _plan(**kw: object) -> Plan:
    base: dict[str, object] = dict(
        job_name="j", job_path="", job_fingerprint="", api_url="http://127.0.0.1:9",
        created_at=datetime.now(UTC), target_resource="device", compiled_filter="id in (1)", action=SET,
        items=(_item(1, ChangeKind.CHANGE, "info"), _item(2, ChangeKind.CREATE, None)), population=10,
        warnings=("2 devices will restart services",), plan_id="p1", fleets=("acme/gateway",),
    )
    base.update(kw)
    return Plan(**base)  # type: ignore[arg-type]


def test_plan_file_round_trip_and_mode(tmp_path: Path) -> None:
    """A plan survives the file unchanged; the file is 0600."""
    plan = _plan(options=ApplyOptions(batch_size=50, max_plan_age=timedelta(hours=2)),
                 expect=Expect(min=1, max=5, max_share=0.5))
    path = tmp_path / "p.json"
    write_plan(plan, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_plan(path) == plan


def test_plan_file_errors(tmp_path: Path) -> None:
    """Unreadable plan files are PlanFileErrors naming the file."""
    with pytest.raises(PlanFileError) as exc:
        read_plan(tmp_path / "none.json")
    assert str(exc.value) == f"{tmp_path / 'none.json'}: no such plan file"
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 99}')
    with pytest.raises(PlanFileError) as exc:
        read_plan(bad)
    assert str(exc.value) == f"{bad}: plan format 99 is not supported (this bulkops reads formats 1, 2)"


def test_expect_guards_name_the_numbers() -> None:
    """expect.min/max/max_share refuse with the numbers in the message."""
    with pytest.raises(GuardError) as exc:
        check_expect(Expect(max=500), 612, 2000, "device")
    assert str(exc.value) == (
        "expect.max is 500 but the job targets 612 devices; narrow the filter, or raise expect.max")
    with pytest.raises(GuardError) as exc:
        check_expect(Expect(min=1), 0, 2000, "device")
    assert str(exc.value) == (
        "expect.min is 1 but the job targets 0 devices; check the filter, or lower expect.min")
    with pytest.raises(GuardError) as exc:
        check_expect(Expect(max_share=0.1), 300, 1000, "device")
    assert str(exc.value) == ("expect.max_share is 10% but the job targets 300 devices of 1000 (30.0%); "
                              "narrow the filter, or raise expect.max_share")
    check_expect(Expect(min=1, max=5, max_share=0.5), 5, 10, "device")


def test_allowlist_guard() -> None:
    """Every targeted or destination fleet must be in allow_fleets (when it is given)."""
    check_allowed([], ["acme/x"])
    check_allowed(["acme/gateway"], ["acme/gateway"])
    with pytest.raises(GuardError) as exc:
        check_allowed(["acme/gateway"], ["acme/gateway", "globex/kiosk"])
    assert str(exc.value) == "fleet globex/kiosk is not in allow_fleets (acme/gateway)"


def test_apply_guards(tmp_path: Path) -> None:
    """At apply: another API URL, a stale plan, a changed or missing job file are refused."""
    job = tmp_path / "job.toml"
    job.write_text("name = 'x'\n")
    fp = hashlib.sha256(job.read_bytes()).hexdigest()
    plan = _plan(job_path=str(job), job_fingerprint=fp)
    check_apply(plan, api_url="http://127.0.0.1:9/")
    with pytest.raises(GuardError) as exc:
        check_apply(plan, api_url="http://127.0.0.1:8")
    assert str(exc.value) == (
        "the plan was made against http://127.0.0.1:9, not http://127.0.0.1:8; make a new plan")
    with pytest.raises(GuardError) as exc:
        check_apply(plan, api_url=plan.api_url, now=plan.created_at + timedelta(hours=25))
    assert str(exc.value) == "the plan is 25.0h old; plans older than 24.0h are refused (make a new plan)"
    job.write_text("name = 'y'\n")
    with pytest.raises(GuardError) as exc:
        check_apply(plan, api_url=plan.api_url)
    assert str(exc.value) == f"the job file {job} changed since the plan was made; make a new plan"
    job.unlink()
    with pytest.raises(GuardError, match="is gone"):
        check_apply(plan, api_url=plan.api_url)
    check_apply(plan, api_url=plan.api_url, force=True)


def test_preview_text_shows_counts_samples_and_warnings() -> None:
    """The preview lists counts per kind, before → after samples and the warnings."""
    text = preview_text(_plan())
    assert "counts   change 1   create 1   delete 0   noop 0" in text
    assert "  change  u1  info → debug" in text
    assert "  create  u2  (absent) → debug" in text
    assert "warning  2 devices will restart services" in text
