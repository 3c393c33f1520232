"""Stage assignment: sizes from counts, shares and the rate form; stable cohorts; the tag and field
orders; no-ops in no stage; the preview's stage section."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops import load_job, make_plan, open_client
from bulkops.errors import InputError
from bulkops.model import ChangeKind, Plan, RateForm, Rollout, StageSize
from bulkops.plan.preview import preview_json, preview_text
from bulkops.plan.stages import stage_sizes
from bulkops.sim.server import SimServer
from tests.conftest import rows

from .conftest import pin_job, plan_of

pytestmark = pytest.mark.anyio


def stages(*sizes: str) -> Rollout:
    return Rollout(stages=tuple(StageSize(share=float(s[:-1]) / 100) if s.endswith("%")
                                else StageSize(count=int(s)) for s in sizes))


def test_sizes_from_counts_and_shares() -> None:
    """Cumulative counts and shares (rounded up) become per-stage sizes adding up to every target."""
    assert stage_sizes(stages("5", "10%", "50%", "100%"), 2000) == [5, 195, 800, 1000]
    assert stage_sizes(stages("1%", "100%"), 150) == [2, 148]
    # 10% of 30 is below 5: that stage would be empty and is dropped
    assert stage_sizes(stages("5", "10%", "100%"), 30) == [5, 25]
    assert stage_sizes(stages("50", "100%"), 20) == [20]
    assert stage_sizes(stages("100%"), 0) == []


def test_rate_form_grows_and_is_capped() -> None:
    """One minute per stage at the current rate; x growth every grow_after targets, up to the maximum."""
    grown = stage_sizes(Rollout(rate=RateForm(5, 2.0, 20, 40)), 200)
    assert grown == [5, 5, 5, 5, 10, 10, 20, 40, 40, 40, 20]
    assert stage_sizes(Rollout(rate=RateForm(10, 1.0, 10, None)), 35) == [10, 10, 10, 5]
    assert stage_sizes(Rollout(rate=RateForm(1, 1.5, 1, None)), 6) == [1, 2, 3]  # grows by at least one
    with pytest.raises(InputError) as info:
        stage_sizes(Rollout(rate=RateForm(1, 1.0, 1, None)), 5000)
    assert str(info.value) == (
        "the rate form makes more than 1000 one-minute stages for 5000 targets (start_per_minute 1, "
        "growth 1): raise start_per_minute, growth or max_per_minute, or give stages instead")


def members(plan: Plan) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for it in plan.items:
        out.setdefault(it.stage, []).append(it.target_id)
    return out


async def test_same_job_same_cohorts_and_noops_unstaged(rsim: SimServer) -> None:
    """Planning the same job twice gives the same cohorts; another job name others; no-ops are stage 0."""
    rollout = 'stages = ["5", "10%", "50%", "100%"]'
    first = await plan_of(rsim, pin_job(rollout, release="1.4.0"))
    again = await plan_of(rsim, pin_job(rollout, release="1.4.0"))
    other = await plan_of(rsim, pin_job(rollout, release="1.4.0", name="another-name"))
    active = [it for it in first.items if it.kind is not ChangeKind.NOOP]
    assert {it.stage for it in first.items if it.kind is ChangeKind.NOOP} == {0}
    assert len(active) > 300
    sizes = [len(members(first)[s]) for s in (1, 2, 3, 4)]
    assert sizes == stage_sizes(stages("5", "10%", "50%", "100%"), len(active))
    assert members(first) == members(again)
    assert members(first)[1] != members(other)[1]
    assert sorted(members(first)[1]) != sorted(it.target_id for it in active)[:5]  # not simply the lowest ids


async def test_tag_order_puts_the_tagged_first(rsim: SimServer) -> None:
    """order = "tag:ring=canary": every canary is in the first stages, before any other device."""
    plan = await plan_of(rsim, pin_job('stages = ["2", "10%", "100%"]\norder = "tag:ring=canary"'))
    sql = "SELECT device FROM device_tag WHERE tag_key='ring' AND value='canary'"
    canaries = {r[0] for r in rows(rsim, sql)}
    staged = [it for it in plan.items if it.stage]
    tagged = [it for it in staged if it.target_id in canaries]
    assert 10 < len(tagged) < len(staged) // 4
    last_canary_stage = max(it.stage for it in tagged)
    first_other_stage = min(it.stage for it in staged if it.target_id not in canaries)
    assert last_canary_stage <= first_other_stage
    assert all(it.target_id in canaries for it in staged if it.stage < first_other_stage)


async def test_field_order_sorts_by_the_field(rsim: SimServer) -> None:
    """order = "device_name": stage 1 holds the first names in sort order."""
    plan = await plan_of(rsim, pin_job('stages = ["3", "100%"]\norder = "device_name"'))
    names = dict(rows(rsim, "SELECT id, device_name FROM device"))
    staged = sorted((names[it.target_id], it.stage) for it in plan.items if it.stage)
    assert [stage for _, stage in staged[:3]] == [1, 1, 1]
    assert {stage for _, stage in staged[3:]} == {2}


async def test_field_order_puts_nulls_last_and_ties_by_id(rsim: SimServer) -> None:
    """order by a field that is mostly null: the devices that have it first, then the rest by id."""
    plain = await plan_of(rsim, pin_job('stages = ["100%"]'))
    ids = sorted(it.target_id for it in plain.items if it.stage)
    noted = [ids[-1], ids[-2]]
    rsim.db.conn.execute("UPDATE device SET note = 'b' WHERE id = ?", (noted[0],))
    rsim.db.conn.execute("UPDATE device SET note = 'a' WHERE id = ?", (noted[1],))
    plan = await plan_of(rsim, pin_job('stages = ["4", "100%"]\norder = "note"'))
    first = sorted(it.target_id for it in plan.items if it.stage == 1)
    assert first == sorted([*noted, *ids[:2]])


async def test_preview_shows_stages_sizes_and_samples(rsim: SimServer) -> None:
    """The preview names the stages, their sizes, sample members, the gate, the abort rule; JSON too."""
    plan = await plan_of(rsim, pin_job('stages = ["5", "10%", "100%"]\nwait = "1m"\napprove = "manual"\n'
                                       'abort = { failure_rate = "5%", failures = 3, min_attempted = 10 }\n'
                                       'stop_switch = "BULKOPS_STOP"'))
    text = preview_text(plan)
    by_stage = members(plan)
    labels = {it.target_id: it.label for it in plan.items}
    total = sum(len(v) for s, v in by_stage.items() if s)
    assert "rollout  3 stages (stages 5, 10%, 100%), order random (seeded by the job name)" in text
    assert ("gate     every device online and running the release it should; wait 1m, timeout 15m, "
            "poll every 30s") in text
    assert ("abort    when failures > max(3, 5% of attempted) once 10 attempted; then stop; approve manual; "
            "stop switch BULKOPS_STOP") in text
    first = ", ".join(labels[t] for t in by_stage[1][:3]) + ", …"
    width = len(str(total))
    assert f"  stage 1   {5:>{width}} devices  to {5:>{width}}  {first}" in text.splitlines()
    data = preview_json(plan)["rollout"]
    assert [s["targets"] for s in data["stages"]] == [len(by_stage[s]) for s in (1, 2, 3)]
    assert data["stages"][2]["cumulative"] == total
    assert data["stages"][0]["sample"] == [labels[t] for t in by_stage[1][:3]]
    assert data["approve"] == "manual" and data["stop_switch"] == "BULKOPS_STOP"
    plain = await plan_of(rsim, pin_job('stages = ["100%"]').replace("[rollout]\nstages = [\"100%\"]\n", ""))
    assert plain.rollout is None and preview_json(plain)["rollout"] is None
    assert "rollout" not in preview_text(plain)


async def test_the_example_rollout_plans_as_documented(rsim: SimServer) -> None:
    """jobs/staged-pin-gateways.toml plans into the three stages docs/rollout.md shows, canaries first."""
    job = load_job(Path(__file__).resolve().parents[2] / "jobs" / "staged-pin-gateways.toml")
    async with open_client(rsim.url, rsim.api_key, job.options) as client:
        plan = await make_plan(job, client, api_url=rsim.url)
    assert [len(v) for _, v in sorted(members(plan).items()) if _] == [5, 71, 675]
    assert plan.counts() == {"change": 751, "create": 0, "delete": 0, "noop": 45}
    lines = preview_text(plan).splitlines()
    assert "rollout  3 stages (stages 5, 10%, 100%), order tag ring=canary first, then random" in lines
    assert ("abort    when failures > max(2, 5% of attempted) once 20 attempted; then undo; approve auto; "
            "stop switch BULKOPS_STOP") in lines
